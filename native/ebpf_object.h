// The socket-LB object (build/bpf/sock.o) loaded through libbpf: its maps pinned and reused under a pin directory,
// each program attached to a cgroup v2 directory through a pinned bpf_link, adopted (atomically replaced) by the next
// start. No Kubernetes knowledge: the caller names files and directories.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct bpf_object;

namespace svcplane {

struct EbpfLinkReport {
  std::string program;  // "svp_connect4"
  uint32_t linkId = 0;
  uint32_t progId = 0;
  bool adopted = false;  // an existing pinned link now runs the new program (BPF_LINK_UPDATE)
};

struct EbpfMapReport {
  std::string name;
  uint32_t id = 0, type = 0, keySize = 0, valueSize = 0, maxEntries = 0, flags = 0;
  uint64_t memlock = 0;  // bytes the kernel charges for it (/proc/self/fdinfo), an estimate on older kernels
};

class EbpfObject {
 public:
  // Opens and loads `objectPath`, reusing maps pinned in `mapDir` (pinning the missing ones). Throws SysError naming the
  // step; a verifier refusal carries the tail of the verifier's log.
  EbpfObject(const std::string& objectPath, const std::string& mapDir);
  ~EbpfObject();
  EbpfObject(const EbpfObject&) = delete;
  EbpfObject& operator=(const EbpfObject&) = delete;

  // Attaches every program to the cgroup through a link pinned as linkDir/<program>; a pinned link on the same cgroup
  // is updated to the new program instead (no moment without a program). Returns one report per program.
  std::vector<EbpfLinkReport> Attach(const std::string& cgroupPath, const std::string& linkDir);

  int MapFd(const std::string& name) const;  // throws when the object has no such map
  std::vector<EbpfMapReport> Maps() const;

 private:
  bpf_object* obj_ = nullptr;
};

// Makes sure `dir` can hold pins: mounts bpffs on /sys/fs/bpf when `dir` is below it and nothing is mounted there,
// then creates `dir` (mode 0700). Throws when `dir` is not on a bpffs.
void EnsureBpffsDir(const std::string& dir);

// A pinned link, read without loading anything (status, cleanup).
struct PinnedLink {
  std::string pin;  // its file
  uint32_t linkId = 0, progId = 0, attachType = 0;
  uint64_t cgroupId = 0;
};
std::vector<PinnedLink> ReadPinnedLinks(const std::string& linkDir);

// Detaches (BPF_LINK_DETACH: effective even while other references exist) and unpins every link in linkDir, then
// unpins everything else under `root` and removes its directories. Returns the number of links detached.
int DetachAndUnpin(const std::string& linkDir, const std::string& root);

// The cgroup id (the kernel's: the cgroup2 directory's inode number) of a cgroup directory.
uint64_t CgroupId(const std::string& cgroupPath);

}  // namespace svcplane
