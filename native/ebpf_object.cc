#include "ebpf_object.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>

#include "errors.h"
#include "fd.h"

namespace svcplane {

namespace {

constexpr long kBpffsMagic = 0xcafe4a11;  // BPF_FS_MAGIC (linux/magic.h)

// libbpf reports through one process-wide print callback; a load on a worker thread captures what it says (the
// verifier's log on a refusal) into its own buffer, so the error can quote it.
thread_local std::string* tCapture = nullptr;

int CapturePrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!tCapture || level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  int n = vsnprintf(buf, sizeof buf, fmt, args);
  if (n > 0) tCapture->append(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
  return 0;
}

std::once_flag gPrintOnce;

struct CaptureScope {
  explicit CaptureScope(std::string* s) {
    std::call_once(gPrintOnce, [] { libbpf_set_print(CapturePrint); });
    tCapture = s;
  }
  ~CaptureScope() { tCapture = nullptr; }
};

// The last lines of libbpf's and the verifier's words: the reason is at the end of a verifier log.
std::string Tail(const std::string& log, size_t lines) {
  size_t end = log.size();
  while (end > 0 && (log[end - 1] == '\n' || log[end - 1] == ' ')) end--;
  size_t pos = end;
  for (size_t n = 0; pos > 0 && n < lines;) {
    pos--;
    if (log[pos] == '\n') n++;
  }
  std::string t = log.substr(pos, end - pos);
  if (!t.empty() && t[0] == '\n') t.erase(0, 1);
  for (char& c : t)
    if (c == '\n') c = '|';
  return t;
}

bool IsBpffs(const std::string& path) {
  struct statfs st;
  return statfs(path.c_str(), &st) == 0 && static_cast<long>(st.f_type) == kBpffsMagic;
}

void MkdirAll(const std::string& dir) {
  std::string cur;
  size_t i = 0;
  while (i <= dir.size()) {
    size_t next = dir.find('/', i);
    if (next == std::string::npos) next = dir.size();
    cur = dir.substr(0, next);
    if (!cur.empty() && mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST)
      throw SysError(errno, "mkdir " + cur + ": " + ErrnoText(errno));
    i = next + 1;
  }
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    out.emplace_back(e->d_name);
  }
  closedir(d);
  return out;
}

// Unpins every file under dir (depth first) and removes the directories.
void RemoveTree(const std::string& dir) {
  for (const std::string& name : DirEntries(dir)) {
    std::string p = dir + "/" + name;
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) RemoveTree(p);
    else if (unlink(p.c_str()) != 0 && errno != ENOENT) throw SysError(errno, "unpin " + p + ": " + ErrnoText(errno));
  }
  if (rmdir(dir.c_str()) != 0 && errno != ENOENT) throw SysError(errno, "rmdir " + dir + ": " + ErrnoText(errno));
}

bool LinkInfo(int fd, bpf_link_info* info) {
  memset(info, 0, sizeof *info);
  __u32 len = sizeof *info;
  return bpf_obj_get_info_by_fd(fd, info, &len) == 0;
}

uint64_t MemlockOf(int fd) {
  std::ifstream f("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("memlock:", 0) == 0) return std::stoull(line.substr(8));
  return 0;
}

}  // namespace

EbpfObject::EbpfObject(const std::string& objectPath, const std::string& mapDir) {
  std::string log;
  CaptureScope capture(&log);
  bpf_object_open_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.pin_root_path = mapDir.c_str();
  obj_ = bpf_object__open_file(objectPath.c_str(), &opts);
  if (!obj_) {
    int err = errno;
    throw SysError(err, "open BPF object " + objectPath + ": " + ErrnoText(err) + (log.empty() ? "" : " (libbpf: " + Tail(log, 3) + ")"));
  }
  if (bpf_object__load(obj_) != 0) {
    int err = errno;
    bpf_object__close(obj_);
    obj_ = nullptr;
    throw SysError(err, "load BPF object " + objectPath + " (maps pinned in " + mapDir + "): " + ErrnoText(err) +
                            (log.empty() ? "" : "; verifier/libbpf: " + Tail(log, 6)));
  }
}

EbpfObject::~EbpfObject() {
  if (obj_) bpf_object__close(obj_);
}

std::vector<EbpfLinkReport> EbpfObject::Attach(const std::string& cgroupPath, const std::string& linkDir) {
  Fd cg(open(cgroupPath.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cg.valid()) throw SysError(errno, "open cgroup " + cgroupPath + ": " + ErrnoText(errno));
  uint64_t cgId = CgroupId(cgroupPath);
  MkdirAll(linkDir);
  std::vector<EbpfLinkReport> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj_) {
    EbpfLinkReport r;
    r.program = bpf_program__name(prog);
    std::string pin = linkDir + "/" + r.program;
    bpf_link* link = nullptr;
    if (access(pin.c_str(), F_OK) == 0) {
      link = bpf_link__open(pin.c_str());
      bpf_link_info info;
      bool same = link && LinkInfo(bpf_link__fd(link), &info) && info.type == BPF_LINK_TYPE_CGROUP &&
                  info.cgroup.cgroup_id == cgId && info.cgroup.attach_type == bpf_program__expected_attach_type(prog);
      if (same && bpf_link__update_program(link, prog) == 0) {
        r.adopted = true;
      } else {
        // Another cgroup (the operator changed --cgroup-root) or a link that cannot take this program: replace it.
        if (link) {
          bpf_link__detach(link);
          bpf_link__destroy(link);
          link = nullptr;
        }
        unlink(pin.c_str());
      }
    }
    if (!link) {
      link = bpf_program__attach_cgroup(prog, cg.get());
      if (!link) {
        int err = errno;
        throw SysError(err, "attach " + r.program + " to cgroup " + cgroupPath + ": " + ErrnoText(err));
      }
      if (bpf_link__pin(link, pin.c_str()) != 0) {
        int err = errno;
        bpf_link__destroy(link);  // unpinned: closing its last fd detaches it
        throw SysError(err, "pin link " + pin + ": " + ErrnoText(err));
      }
    }
    bpf_link_info info;
    if (LinkInfo(bpf_link__fd(link), &info)) {
      r.linkId = info.id;
      r.progId = info.prog_id;
    }
    // The pin holds the link; our fd goes (bpf_link__destroy of a cgroup link only closes it).
    bpf_link__disconnect(link);
    bpf_link__destroy(link);
    out.push_back(r);
  }
  return out;
}

int EbpfObject::MapFd(const std::string& name) const {
  bpf_map* m = bpf_object__find_map_by_name(obj_, name.c_str());
  if (!m) throw SysError(ENOENT, "BPF map " + name + ": not in the object");
  return bpf_map__fd(m);
}

std::vector<EbpfMapReport> EbpfObject::Maps() const {
  std::vector<EbpfMapReport> out;
  bpf_map* m;
  bpf_object__for_each_map(m, obj_) {
    bpf_map_info info;
    memset(&info, 0, sizeof info);
    __u32 len = sizeof info;
    int fd = bpf_map__fd(m);
    if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) != 0) continue;
    EbpfMapReport r;
    r.name = bpf_map__name(m);
    r.id = info.id;
    r.type = info.type;
    r.keySize = info.key_size;
    r.valueSize = info.value_size;
    r.maxEntries = info.max_entries;
    r.flags = info.map_flags;
    r.memlock = MemlockOf(fd);
    out.push_back(r);
  }
  return out;
}

void EnsureBpffsDir(const std::string& dir) {
  const std::string sysBpf = "/sys/fs/bpf";
  if (dir.rfind(sysBpf + "/", 0) == 0 && !IsBpffs(sysBpf)) {
    // What systemd does at boot on most distributions; a container's /sys/fs/bpf is the host's (hostPath) or nothing.
    if (mount("bpf", sysBpf.c_str(), "bpf", 0, "mode=0700") != 0)
      throw SysError(errno, "mount bpffs on " + sysBpf + ": " + ErrnoText(errno));
  }
  MkdirAll(dir);
  if (!IsBpffs(dir)) throw SysError(EINVAL, dir + " is not on a bpf filesystem (mount -t bpf bpf <dir>)");
}

std::vector<PinnedLink> ReadPinnedLinks(const std::string& linkDir) {
  std::vector<PinnedLink> out;
  for (const std::string& name : DirEntries(linkDir)) {
    PinnedLink l;
    l.pin = linkDir + "/" + name;
    Fd fd(bpf_obj_get(l.pin.c_str()));
    if (!fd.valid()) throw SysError(errno, "open pinned link " + l.pin + ": " + ErrnoText(errno));
    bpf_link_info info;
    if (!LinkInfo(fd.get(), &info)) throw SysError(errno, "read link info of " + l.pin + ": " + ErrnoText(errno));
    l.linkId = info.id;
    l.progId = info.prog_id;
    if (info.type == BPF_LINK_TYPE_CGROUP) {
      l.cgroupId = info.cgroup.cgroup_id;
      l.attachType = info.cgroup.attach_type;
    }
    out.push_back(l);
  }
  return out;
}

int DetachAndUnpin(const std::string& linkDir, const std::string& root) {
  int detached = 0;
  for (const std::string& name : DirEntries(linkDir)) {
    std::string pin = linkDir + "/" + name;
    Fd fd(bpf_obj_get(pin.c_str()));
    if (fd.valid()) {
      // BPF_LINK_DETACH (5.9): the link stops acting now, whoever else holds it.
      union bpf_attr attr;
      memset(&attr, 0, sizeof attr);
      attr.link_detach.link_fd = static_cast<__u32>(fd.get());
      if (syscall(__NR_bpf, BPF_LINK_DETACH, &attr, sizeof attr) != 0 && errno != ENOLINK)
        throw SysError(errno, "detach link " + pin + ": " + ErrnoText(errno));
      detached++;
    }
    if (unlink(pin.c_str()) != 0 && errno != ENOENT) throw SysError(errno, "unpin " + pin + ": " + ErrnoText(errno));
  }
  RemoveTree(root);
  return detached;
}

uint64_t CgroupId(const std::string& cgroupPath) {
  struct stat st;
  if (stat(cgroupPath.c_str(), &st) != 0) throw SysError(errno, "stat cgroup " + cgroupPath + ": " + ErrnoText(errno));
  return st.st_ino;
}

}  // namespace svcplane
