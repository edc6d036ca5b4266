{
  "targets": [
    {
      "target_name": "svcplane_native",
      "sources": [
        "native/addon.cc",
        "native/napi_nft_socket.cc",
        "native/napi_transceiver.cc",
        "native/abstract_socket.cc",
        "native/errors.cc",
        "native/netns.cc",
        "native/netlink_socket.cc",
        "native/socket_registry.cc",
        "native/nl_ack.cc",
        "native/nl_exchange.cc",
        "native/nl_transact.cc",
        "native/guarded_buffer.cc",
        "native/nft_records.cc",
        "native/nft_commit.cc",
        "native/nft_dump.cc",
        "native/sysctl.cc",
        "native/ebpf_object.cc",
        "native/ebpf_maps.cc",
        "native/napi_ebpf.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags libnftnl libmnl libbpf)"],
      "libraries": ["<!@(pkg-config --libs libnftnl libmnl libbpf)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS",
                  "SVCPLANE_LIBNFTNL_VERSION=<!(pkg-config --modversion libnftnl)",
                  "SVCPLANE_LIBMNL_VERSION=<!(pkg-config --modversion libmnl)",
                  "SVCPLANE_LIBBPF_VERSION=<!(pkg-config --modversion libbpf)"]
    },
    {
      # The socket-LB programs (native/bpf/sock.c) for the BPF target. sock.bpf.o needs bpf_set_retval in sock_addr
      # programs (Linux 5.18); sock-noretval.bpf.o is the same without it (5.8-5.17: a refusal is EPERM there).
      # -mcpu=v3: 32-bit jumps and ALU (Linux 5.1). The multiarch include dir holds <asm/types.h> on Debian.
      "target_name": "svcplane_bpf",
      "type": "none",
      "actions": [
        {
          "action_name": "sock_bpf",
          "inputs": ["native/bpf/sock.c", "native/bpf/maps.h"],
          "outputs": ["<(PRODUCT_DIR)/sock.bpf.o"],
          "action": ["clang", "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
                     "-I/usr/include/<!(gcc -print-multiarch)", "-c", "native/bpf/sock.c", "-o", "<(PRODUCT_DIR)/sock.bpf.o"]
        },
        {
          "action_name": "sock_noretval_bpf",
          "inputs": ["native/bpf/sock.c", "native/bpf/maps.h"],
          "outputs": ["<(PRODUCT_DIR)/sock-noretval.bpf.o"],
          "action": ["clang", "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror", "-DSVP_NO_SET_RETVAL",
                     "-I/usr/include/<!(gcc -print-multiarch)", "-c", "native/bpf/sock.c", "-o", "<(PRODUCT_DIR)/sock-noretval.bpf.o"]
        }
      ]
    }
  ]
}
