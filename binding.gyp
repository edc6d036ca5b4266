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
        "native/sysctl.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags libnftnl libmnl)"],
      "libraries": ["<!@(pkg-config --libs libnftnl libmnl)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS",
                  "SVCPLANE_LIBNFTNL_VERSION=<!(pkg-config --modversion libnftnl)",
                  "SVCPLANE_LIBMNL_VERSION=<!(pkg-config --modversion libmnl)"]
    }
  ]
}
