/*
 * tlpwire's socket-descriptor addon (Node-API, plain C, POSIX): one call, so that a socket that
 * node:net accepted can read into a buffer of its own like a connecting one.
 *
 *   dupFd(fd) -> a new descriptor for the same open socket, close-on-exec, the lowest free ≥ 3.
 *
 * node:net gives `onread` (reads into one reused buffer instead of a new 64 KiB buffer per
 * read) only to sockets it creates, connecting ones and those made from a descriptor; an accepted
 * socket gets a new buffer per read, which V8 pays for with full collections. src/link/
 * net-transport.ts takes the accepted socket's descriptor, makes a socket with `onread` from a
 * duplicate of it, and closes the accepted one: closing one of two descriptors leaves the
 * connection open. Without this addon, accepted sockets read as node:net gives them.
 *
 * A bad argument throws a TypeError; a failing fcntl throws an Error naming errno.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#define SOCKFD_VERSION 1

static napi_value dup_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  double d = -1;
  if (argc < 1 || napi_get_value_double(env, argv[0], &d) != napi_ok || !(d >= 0 && d <= 2147483647.0) || d != (double)(int)d) {
    napi_throw_type_error(env, NULL, "dupFd(fd): fd must be a descriptor number (an integer >= 0)");
    return NULL;
  }
  int fd = fcntl((int)d, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "dupFd(%d): %s", (int)d, strerror(errno));
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  napi_value out;
  if (napi_create_int32(env, fd, &out) != napi_ok) return NULL;
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_value version;
  if (napi_create_function(env, "dupFd", NAPI_AUTO_LENGTH, dup_fd, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "dupFd", fn) != napi_ok) return NULL;
  if (napi_create_int32(env, SOCKFD_VERSION, &version) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "version", version) != napi_ok) return NULL;
  return exports;
}
