{
  "targets": [
    {
      "target_name": "tap",
      "sources": ["tap.c"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "conditions": [
        ["OS!='linux'", { "type": "none", "sources!": ["tap.c"] }]
      ]
    },
    {
      "target_name": "bulkcopy",
      "sources": ["bulkcopy.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "sockfd",
      "sources": ["sockfd.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "conditions": [
        ["OS=='win'", { "type": "none", "sources!": ["sockfd.c"] }]
      ]
    }
  ]
}
