/*
 * tlpwire's Linux TAP addon (Node-API, plain C).
 *
 * One JS object per open TAP. The fd is non-blocking and watched with a libuv poll handle on
 * Node's own event loop, so frames arrive without the thread pool and without blocking the
 * loop: on "readable" we read frames until EAGAIN (or a batch limit, for fairness with the rest
 * of the loop; the poll is level-triggered, so what is left fires again next turn) and hand the
 * whole batch to JS in one call. Writes are write(2), one frame per call: a TAP takes one frame
 * per write, so writev would glue a batch into one frame. EAGAIN is returned, never waited on.
 *
 * Errors thrown to JS carry `code` (the errno name, e.g. "EPERM"), `errno` and `syscall`, so the
 * TypeScript layer (src/net/tap-native.ts) can say in one line what is missing.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_tun.h>

#define TAP_ADDON_VERSION 1
/* The largest frame a TAP can hand us: MTU ≤ 65535 plus an Ethernet header and a VLAN tag. Every
 * read gets at least this much room, so the kernel never truncates a frame silently. */
#define FRAME_ROOM (65535 + 14 + 4 + 1)
#define DEFAULT_SLAB_BYTES (256 * 1024)
#define DEFAULT_MAX_BATCH 64
#define MAX_MAX_BATCH 1024

typedef struct tap_s {
  napi_env env;
  int fd;
  char name[IFNAMSIZ];
  uv_poll_t *poll;      /* NULL once closed; freed in its close callback */
  int reading;
  int loop_ref;         /* whether an active poll keeps the event loop alive */
  napi_ref self;        /* weak, made strong while reading so the wrapper outlives the poll */
  napi_ref on_frames;
  napi_ref on_error;
  napi_ref lengths_ref; /* Uint32Array shared with JS in slab mode; NULL selects array mode */
  uint32_t *lengths;
  uint32_t max_batch;
  uint32_t frame_len[MAX_MAX_BATCH];
  uint8_t *slab;
  size_t slab_bytes;
  int last_errno;
  napi_async_context async;
} tap_t;

/* ---------------------------------------------------------------- errors */

static const char *errno_name(int err) {
  switch (err) {
    case EBADFD: return "EBADFD"; /* no libuv name; a TAP whose interface was deleted reports it */
    case ENOTTY: return "ENOTTY";
    default: {
      const char *n = uv_err_name(-err);
      return (n != NULL && strncmp(n, "Unknown", 7) != 0) ? n : "EUNKNOWN";
    }
  }
}

static napi_value make_errno_error(napi_env env, int err, const char *syscall, const char *ifname) {
  char msg[256];
  if (ifname != NULL && ifname[0] != '\0')
    snprintf(msg, sizeof msg, "%s %s: %s (%s)", syscall, ifname, strerror(err), errno_name(err));
  else
    snprintf(msg, sizeof msg, "%s: %s (%s)", syscall, strerror(err), errno_name(err));
  napi_value code, message, error, v;
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, err, &v);
  napi_set_named_property(env, error, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "syscall", v);
  return error;
}

static void throw_errno(napi_env env, int err, const char *syscall, const char *ifname) {
  napi_throw(env, make_errno_error(env, err, syscall, ifname));
}

static void throw_usage(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_TAP_ARGUMENT", msg);
}

/* Propagates a failed Node-API call as a JS exception (unless one is already pending). */
#define CHECK(call)                                                           \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      bool pending_ = false;                                                  \
      napi_is_exception_pending(env, &pending_);                              \
      if (!pending_) napi_throw_error(env, "ERR_TAP_ADDON", "Node-API call failed: " #call); \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

/* ---------------------------------------------------------------- helpers */

static tap_t *this_tap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok || p == NULL) {
    throw_usage(env, "not a Tap object");
    return NULL;
  }
  return (tap_t *)p;
}

static int require_open(napi_env env, tap_t *t) {
  if (t->fd >= 0) return 1;
  throw_errno(env, EBADF, "tap", t->name);
  return 0;
}

static void free_handle(uv_handle_t *h) { free(h); }

/* Stops the poll; drops the strong self reference that kept the wrapper alive while reading. */
static void stop_reading(tap_t *t) {
  if (!t->reading) return;
  t->reading = 0;
  if (t->poll != NULL) uv_poll_stop(t->poll);
  if (t->self != NULL) {
    uint32_t rc;
    napi_reference_unref(t->env, t->self, &rc);
  }
}

static void release_fd(tap_t *t) {
  if (t->poll != NULL) {
    uv_poll_stop(t->poll); /* never close an fd that is still being polled */
    t->poll->data = NULL;
    uv_close((uv_handle_t *)t->poll, free_handle);
    t->poll = NULL;
  }
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
}

static void delete_ref(napi_env env, napi_ref *r) {
  if (*r != NULL) {
    napi_delete_reference(env, *r);
    *r = NULL;
  }
}

/* Interface ioctls (flags, MTU) name the interface, not the fd, so any socket will do. */
static int ifreq_ioctl(unsigned long req, struct ifreq *ifr) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  int rc = ioctl(s, req, ifr);
  int err = rc < 0 ? errno : 0;
  close(s);
  return err;
}

static int get_bool(napi_env env, napi_value v, bool *out) {
  return napi_get_value_bool(env, v, out) == napi_ok;
}

static void ifreq_for(tap_t *t, struct ifreq *ifr) {
  memset(ifr, 0, sizeof *ifr);
  memcpy(ifr->ifr_name, t->name, IFNAMSIZ);
}

/* Typed-array (Buffer included) data pointer, already adjusted for the view's byte offset. */
static int view_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  napi_typedarray_type type;
  size_t length;
  void *p;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, &length, &p, &ab, &off) != napi_ok) return 0;
  if (type != napi_uint8_array && type != napi_uint8_clamped_array && type != napi_int8_array) return 0;
  *data = (uint8_t *)p;
  *len = length;
  return 1;
}

/* ---------------------------------------------------------------- reading */

static void call_js(tap_t *t, napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_env env = t->env;
  napi_value fn, self, result;
  if (fn_ref == NULL || t->self == NULL) return;
  if (napi_get_reference_value(env, fn_ref, &fn) != napi_ok || fn == NULL) return;
  if (napi_get_reference_value(env, t->self, &self) != napi_ok || self == NULL) return;
  /* make_callback runs nextTicks and microtasks afterwards, as for any I/O callback. */
  if (napi_make_callback(env, t->async, self, fn, argc, argv, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc); /* an exception in a callback is uncaught, like in 'data' */
    }
  }
}

static void report_error(tap_t *t, int err, const char *syscall) {
  napi_env env = t->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value e = make_errno_error(env, err, syscall, t->name);
  call_js(t, t->on_error, 1, &e);
  napi_close_handle_scope(env, scope);
}

static void deliver(tap_t *t, uint32_t n, size_t used) {
  napi_env env = t->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2];
  void *data;
  if (t->lengths != NULL) {
    /* Slab mode: one Buffer with the frames back to back, their lengths in the shared array. */
    memcpy(t->lengths, t->frame_len, n * sizeof(uint32_t));
    if (napi_create_buffer_copy(env, used, t->slab, &data, &argv[0]) == napi_ok &&
        napi_create_uint32(env, n, &argv[1]) == napi_ok)
      call_js(t, t->on_frames, 2, argv);
  } else {
    /* Array mode: one Buffer per frame. */
    if (napi_create_array_with_length(env, n, &argv[0]) == napi_ok) {
      size_t off = 0;
      for (uint32_t i = 0; i < n; i++) {
        napi_value b;
        if (napi_create_buffer_copy(env, t->frame_len[i], t->slab + off, &data, &b) != napi_ok) break;
        napi_set_element(env, argv[0], i, b);
        off += t->frame_len[i];
      }
      call_js(t, t->on_frames, 1, argv);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  tap_t *t = (tap_t *)h->data;
  (void)events;
  if (t == NULL || t->fd < 0 || !t->reading) return;
  if (status < 0) {
    /* libuv turns POLLERR into an error status; on a TAP it means the interface is gone. */
    stop_reading(t);
    report_error(t, -status, "poll");
    return;
  }
  size_t used = 0;
  uint32_t n = 0;
  int err = 0;
  while (n < t->max_batch && t->slab_bytes - used >= FRAME_ROOM) {
    ssize_t r = read(t->fd, t->slab + used, t->slab_bytes - used);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    if (r == 0) break;
    t->frame_len[n++] = (uint32_t)r;
    used += (size_t)r;
  }
  if (n > 0) deliver(t, n, used);
  /* The callback may have closed or paused us; the error still belongs to this turn. */
  if (err != 0 && t->fd >= 0) {
    stop_reading(t);
    report_error(t, err, "read");
  }
}

/* ---------------------------------------------------------------- lifecycle */

static void finalize(napi_env env, void *data, void *hint) {
  tap_t *t = (tap_t *)data;
  (void)hint;
  release_fd(t);
  delete_ref(env, &t->on_frames);
  delete_ref(env, &t->on_error);
  delete_ref(env, &t->lengths_ref);
  delete_ref(env, &t->self);
  if (t->async != NULL) napi_async_destroy(env, t->async);
  free(t->slab);
  free(t);
}

/* new Tap(name, { create?: boolean }) — opens /dev/net/tun and attaches to (or creates) `name`. */
static napi_value Tap_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  napi_value new_target;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  CHECK(napi_get_new_target(env, info, &new_target));
  if (new_target == NULL) {
    throw_usage(env, "Tap is a class: use new Tap(name)");
    return NULL;
  }
  if (argc < 1) {
    throw_usage(env, "Tap(name): name missing");
    return NULL;
  }
  char name[IFNAMSIZ + 1];
  size_t name_len = 0;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok) {
    throw_usage(env, "Tap(name): name must be a string");
    return NULL;
  }
  if (name_len >= IFNAMSIZ) {
    throw_errno(env, ENAMETOOLONG, "TUNSETIFF", NULL);
    return NULL;
  }

  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    throw_errno(env, errno, "open /dev/net/tun", name);
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  /* No packet-info prefix and no virtio-net header: plain Ethernet frames both ways. */
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  memcpy(ifr.ifr_name, name, name_len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    throw_errno(env, err, "TUNSETIFF", name);
    return NULL;
  }

  tap_t *t = (tap_t *)calloc(1, sizeof(tap_t));
  uint8_t *slab = (uint8_t *)malloc(DEFAULT_SLAB_BYTES);
  uv_poll_t *poll = (uv_poll_t *)calloc(1, sizeof(uv_poll_t));
  uv_loop_t *loop = NULL;
  if (t == NULL || slab == NULL || poll == NULL || napi_get_uv_event_loop(env, &loop) != napi_ok ||
      uv_poll_init(loop, poll, fd) != 0) {
    free(t);
    free(slab);
    free(poll);
    close(fd);
    throw_errno(env, ENOMEM, "Tap", name);
    return NULL;
  }
  t->env = env;
  t->fd = fd;
  memcpy(t->name, ifr.ifr_name, IFNAMSIZ); /* the kernel's name: "tap%d" templates get a number */
  t->name[IFNAMSIZ - 1] = '\0';
  t->poll = poll;
  poll->data = t;
  t->loop_ref = 1;
  t->slab = slab;
  t->slab_bytes = DEFAULT_SLAB_BYTES;
  t->max_batch = DEFAULT_MAX_BATCH;

  napi_value resource_name;
  napi_create_string_utf8(env, "tlpwire:tap", NAPI_AUTO_LENGTH, &resource_name);
  if (napi_async_init(env, self, resource_name, &t->async) != napi_ok ||
      napi_wrap(env, self, t, finalize, NULL, NULL) != napi_ok) {
    release_fd(t);
    if (t->async != NULL) napi_async_destroy(env, t->async);
    free(t->slab);
    free(t);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, "ERR_TAP_ADDON", "cannot wrap the Tap object");
    return NULL;
  }
  napi_create_reference(env, self, 0, &t->self);
  return self;
}

/* tap.setCallbacks(onFrames, onError, lengths: Uint32Array | null)
 * Slab mode (lengths given): onFrames(buffer, count), frame i is lengths[i] bytes, back to back.
 * Array mode (null): onFrames(buffers). The batch limit is the array's length (slab mode) or 64. */
static napi_value Tap_setCallbacks(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tap_t *t = this_tap(env, info, &argc, argv);
  if (t == NULL) return NULL;
  napi_valuetype ty0, ty1, ty2 = napi_null;
  if (argc < 2 || napi_typeof(env, argv[0], &ty0) != napi_ok || napi_typeof(env, argv[1], &ty1) != napi_ok ||
      ty0 != napi_function || ty1 != napi_function) {
    throw_usage(env, "setCallbacks(onFrames, onError, lengths)");
    return NULL;
  }
  if (argc >= 3) CHECK(napi_typeof(env, argv[2], &ty2));
  uint32_t *lengths = NULL;
  uint32_t max_batch = DEFAULT_MAX_BATCH;
  if (ty2 != napi_null && ty2 != napi_undefined) {
    bool is_ta = false;
    napi_typedarray_type type;
    size_t length;
    void *p;
    napi_value ab;
    size_t off;
    CHECK(napi_is_typedarray(env, argv[2], &is_ta));
    if (!is_ta || napi_get_typedarray_info(env, argv[2], &type, &length, &p, &ab, &off) != napi_ok ||
        type != napi_uint32_array || length == 0) {
      throw_usage(env, "setCallbacks: lengths must be a non-empty Uint32Array");
      return NULL;
    }
    lengths = (uint32_t *)p;
    max_batch = length > MAX_MAX_BATCH ? MAX_MAX_BATCH : (uint32_t)length;
  }
  delete_ref(env, &t->on_frames);
  delete_ref(env, &t->on_error);
  delete_ref(env, &t->lengths_ref);
  CHECK(napi_create_reference(env, argv[0], 1, &t->on_frames));
  CHECK(napi_create_reference(env, argv[1], 1, &t->on_error));
  if (lengths != NULL) CHECK(napi_create_reference(env, argv[2], 1, &t->lengths_ref));
  t->lengths = lengths;
  t->max_batch = max_batch;
  return NULL;
}

static napi_value Tap_startReading(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL || !require_open(env, t)) return NULL;
  if (t->on_frames == NULL) {
    throw_usage(env, "startReading: call setCallbacks first");
    return NULL;
  }
  if (t->reading) return NULL;
  int rc = uv_poll_start(t->poll, UV_READABLE, on_poll);
  if (rc != 0) {
    throw_errno(env, -rc, "uv_poll_start", t->name);
    return NULL;
  }
  if (!t->loop_ref) uv_unref((uv_handle_t *)t->poll);
  t->reading = 1;
  uint32_t count;
  napi_reference_ref(env, t->self, &count);
  return NULL;
}

static napi_value Tap_stopReading(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL) return NULL;
  stop_reading(t);
  return NULL;
}

/* tap.ref(keepLoopAlive) — like socket.ref()/unref() */
static napi_value Tap_ref(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = this_tap(env, info, &argc, argv);
  bool on = true;
  if (t == NULL) return NULL;
  if (argc >= 1 && !get_bool(env, argv[0], &on)) {
    throw_usage(env, "ref(boolean)");
    return NULL;
  }
  t->loop_ref = on;
  if (t->poll != NULL) {
    if (on) uv_ref((uv_handle_t *)t->poll);
    else uv_unref((uv_handle_t *)t->poll);
  }
  return NULL;
}

/* tap.write(frame) → 0, or the errno (EAGAIN: the kernel queue is full; the frame is not sent). */
static napi_value Tap_write(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  tap_t *t = this_tap(env, info, &argc, argv);
  if (t == NULL) return NULL;
  uint8_t *data;
  size_t len;
  if (argc < 1 || !view_bytes(env, argv[0], &data, &len)) {
    throw_usage(env, "write(frame: Uint8Array)");
    return NULL;
  }
  int err = 0;
  if (t->fd < 0) err = EBADF;
  else {
    ssize_t r;
    do r = write(t->fd, data, len);
    while (r < 0 && errno == EINTR);
    if (r < 0) err = errno;
  }
  t->last_errno = err;
  CHECK(napi_create_int32(env, err, &result));
  return result;
}

/* tap.writeMany(frames, count) → how many of the first `count` frames were written; it stops at
 * the first error (lastErrno() says which). One JS→C crossing per batch instead of per frame. */
static napi_value Tap_writeMany(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  tap_t *t = this_tap(env, info, &argc, argv);
  if (t == NULL) return NULL;
  bool is_array = false;
  uint32_t count = 0, arr_len = 0;
  if (argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array) {
    throw_usage(env, "writeMany(frames: Uint8Array[], count?: number)");
    return NULL;
  }
  CHECK(napi_get_array_length(env, argv[0], &arr_len));
  count = arr_len;
  if (argc >= 2) {
    napi_valuetype ty;
    CHECK(napi_typeof(env, argv[1], &ty));
    if (ty == napi_number) {
      CHECK(napi_get_value_uint32(env, argv[1], &count));
      if (count > arr_len) count = arr_len;
    }
  }
  uint32_t i = 0;
  int err = t->fd < 0 ? EBADF : 0;
  for (; err == 0 && i < count; i++) {
    napi_value el;
    uint8_t *data;
    size_t len;
    CHECK(napi_get_element(env, argv[0], i, &el));
    if (!view_bytes(env, el, &data, &len)) {
      throw_usage(env, "writeMany: every frame must be a Uint8Array");
      return NULL;
    }
    ssize_t r;
    do r = write(t->fd, data, len);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      err = errno;
      break;
    }
  }
  t->last_errno = err;
  CHECK(napi_create_uint32(env, i, &result));
  return result;
}

static napi_value Tap_lastErrno(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value result;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL) return NULL;
  CHECK(napi_create_int32(env, t->last_errno, &result));
  return result;
}

/* tap.setUp(up) — IFF_UP via SIOCSIFFLAGS; a no-op when the flag already has that value, so a
 * TAP that an administrator brought up works without CAP_NET_ADMIN. */
static napi_value Tap_setUp(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = this_tap(env, info, &argc, argv);
  bool up;
  if (t == NULL || !require_open(env, t)) return NULL;
  if (argc < 1 || !get_bool(env, argv[0], &up)) {
    throw_usage(env, "setUp(boolean)");
    return NULL;
  }
  struct ifreq ifr;
  ifreq_for(t, &ifr);
  int err = ifreq_ioctl(SIOCGIFFLAGS, &ifr);
  if (err != 0) {
    throw_errno(env, err, "SIOCGIFFLAGS", t->name);
    return NULL;
  }
  if (((ifr.ifr_flags & IFF_UP) != 0) == up) return NULL;
  if (up) ifr.ifr_flags |= IFF_UP;
  else ifr.ifr_flags &= ~IFF_UP;
  err = ifreq_ioctl(SIOCSIFFLAGS, &ifr);
  if (err != 0) throw_errno(env, err, "SIOCSIFFLAGS", t->name);
  return NULL;
}

static napi_value Tap_flags(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value result;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL || !require_open(env, t)) return NULL;
  struct ifreq ifr;
  ifreq_for(t, &ifr);
  int err = ifreq_ioctl(SIOCGIFFLAGS, &ifr);
  if (err != 0) {
    throw_errno(env, err, "SIOCGIFFLAGS", t->name);
    return NULL;
  }
  CHECK(napi_create_uint32(env, (uint16_t)ifr.ifr_flags, &result));
  return result;
}

/* tap.setCarrier(on) — TUNSETCARRIER (Linux ≥ 5.0); throws ENOTTY/EINVAL where unsupported. */
static napi_value Tap_setCarrier(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = this_tap(env, info, &argc, argv);
  bool on;
  if (t == NULL || !require_open(env, t)) return NULL;
  if (argc < 1 || !get_bool(env, argv[0], &on)) {
    throw_usage(env, "setCarrier(boolean)");
    return NULL;
  }
#ifdef TUNSETCARRIER
  int carrier = on ? 1 : 0;
  if (ioctl(t->fd, TUNSETCARRIER, &carrier) < 0) throw_errno(env, errno, "TUNSETCARRIER", t->name);
#else
  throw_errno(env, ENOTTY, "TUNSETCARRIER", t->name);
#endif
  return NULL;
}

static napi_value Tap_setMtu(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = this_tap(env, info, &argc, argv);
  uint32_t mtu;
  if (t == NULL || !require_open(env, t)) return NULL;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &mtu) != napi_ok || mtu > 65535) {
    throw_usage(env, "setMtu(mtu: 0..65535)");
    return NULL;
  }
  struct ifreq ifr;
  ifreq_for(t, &ifr);
  int err = ifreq_ioctl(SIOCGIFMTU, &ifr);
  if (err == 0 && (uint32_t)ifr.ifr_mtu == mtu) return NULL; /* unchanged: needs no privilege */
  ifreq_for(t, &ifr);
  ifr.ifr_mtu = (int)mtu;
  err = ifreq_ioctl(SIOCSIFMTU, &ifr);
  if (err != 0) throw_errno(env, err, "SIOCSIFMTU", t->name);
  return NULL;
}

static napi_value Tap_getMtu(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value result;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL || !require_open(env, t)) return NULL;
  struct ifreq ifr;
  ifreq_for(t, &ifr);
  int err = ifreq_ioctl(SIOCGIFMTU, &ifr);
  if (err != 0) {
    throw_errno(env, err, "SIOCGIFMTU", t->name);
    return NULL;
  }
  CHECK(napi_create_uint32(env, (uint32_t)ifr.ifr_mtu, &result));
  return result;
}

/* tap.setPersist(on) — TUNSETPERSIST: the interface outlives this fd (what `ip tuntap add` does). */
static napi_value Tap_setPersist(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = this_tap(env, info, &argc, argv);
  bool on;
  if (t == NULL || !require_open(env, t)) return NULL;
  if (argc < 1 || !get_bool(env, argv[0], &on)) {
    throw_usage(env, "setPersist(boolean)");
    return NULL;
  }
  if (ioctl(t->fd, TUNSETPERSIST, on ? 1UL : 0UL) < 0) throw_errno(env, errno, "TUNSETPERSIST", t->name);
  return NULL;
}

/* tap.setNonBlocking(on) — only for measurements that compare against fs streams on the fd. */
static napi_value Tap_setNonBlocking(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap_t *t = this_tap(env, info, &argc, argv);
  bool on;
  if (t == NULL || !require_open(env, t)) return NULL;
  if (argc < 1 || !get_bool(env, argv[0], &on)) {
    throw_usage(env, "setNonBlocking(boolean)");
    return NULL;
  }
  int fl = fcntl(t->fd, F_GETFL);
  if (fl < 0 || fcntl(t->fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK)) < 0)
    throw_errno(env, errno, "fcntl", t->name);
  return NULL;
}

static napi_value Tap_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL) return NULL;
  stop_reading(t);
  release_fd(t);
  /* Dropping the callbacks breaks the cycle wrapper → callbacks → closures → wrapper. */
  delete_ref(env, &t->on_frames);
  delete_ref(env, &t->on_error);
  delete_ref(env, &t->lengths_ref);
  t->lengths = NULL;
  return NULL;
}

static napi_value Tap_name(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value result;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL) return NULL;
  CHECK(napi_create_string_utf8(env, t->name, NAPI_AUTO_LENGTH, &result));
  return result;
}

static napi_value Tap_fd(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value result;
  tap_t *t = this_tap(env, info, &argc, NULL);
  if (t == NULL) return NULL;
  CHECK(napi_create_int32(env, t->fd, &result));
  return result;
}

/* ---------------------------------------------------------------- module */

NAPI_MODULE_INIT() {
  napi_property_descriptor methods[] = {
      {"setCallbacks", NULL, Tap_setCallbacks, NULL, NULL, NULL, napi_default, NULL},
      {"startReading", NULL, Tap_startReading, NULL, NULL, NULL, napi_default, NULL},
      {"stopReading", NULL, Tap_stopReading, NULL, NULL, NULL, napi_default, NULL},
      {"ref", NULL, Tap_ref, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, Tap_write, NULL, NULL, NULL, napi_default, NULL},
      {"writeMany", NULL, Tap_writeMany, NULL, NULL, NULL, napi_default, NULL},
      {"lastErrno", NULL, Tap_lastErrno, NULL, NULL, NULL, napi_default, NULL},
      {"setUp", NULL, Tap_setUp, NULL, NULL, NULL, napi_default, NULL},
      {"flags", NULL, Tap_flags, NULL, NULL, NULL, napi_default, NULL},
      {"setCarrier", NULL, Tap_setCarrier, NULL, NULL, NULL, napi_default, NULL},
      {"setMtu", NULL, Tap_setMtu, NULL, NULL, NULL, napi_default, NULL},
      {"getMtu", NULL, Tap_getMtu, NULL, NULL, NULL, napi_default, NULL},
      {"setPersist", NULL, Tap_setPersist, NULL, NULL, NULL, napi_default, NULL},
      {"setNonBlocking", NULL, Tap_setNonBlocking, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, Tap_close, NULL, NULL, NULL, napi_default, NULL},
      {"name", NULL, Tap_name, NULL, NULL, NULL, napi_default, NULL},
      {"fd", NULL, Tap_fd, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls, version;
  if (napi_define_class(env, "Tap", NAPI_AUTO_LENGTH, Tap_new, NULL, sizeof methods / sizeof methods[0], methods,
                        &cls) != napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "Tap", cls);
  napi_create_uint32(env, TAP_ADDON_VERSION, &version);
  napi_set_named_property(env, exports, "version", version);
  return exports;
}
