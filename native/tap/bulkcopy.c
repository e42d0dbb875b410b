/*
 * tlpwire's bulk-copy addon (Node-API, plain C, any platform): the DMA paths' many small copies
 * done in one call. JavaScript copies 256 bytes with set(subarray(...)), about 90 ns of which most
 * is making the view (and collecting it later); here a whole run of TLP payloads costs one call
 * and a memcpy each. src/memory/bulk-copy.ts loads it and falls back to JavaScript without it.
 *
 *   gather(dst, dstOffset, src, srcOffsets, lengths, count)
 *     piece i is src[srcOffsets[i], srcOffsets[i] + lengths[i]); the pieces land back to back
 *     in dst from dstOffset (the payloads of received MWr TLPs into host RAM).
 *   scatter(dst, dstOffsets, src, srcOffset, lengths, count)
 *     the reverse: the pieces are back to back in src from srcOffset, piece i lands at
 *     dst[dstOffsets[i]] (a write's bytes into the payloads of the MWr TLPs that carry it).
 *
 * dst and src are Uint8Arrays, the offsets and lengths Int32Arrays.
 *
 * Every range is checked before anything is copied: bad arguments throw a RangeError or
 * TypeError and copy nothing.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define BULKCOPY_VERSION 1

static napi_value throw_error(napi_env env, int range, const char* msg) {
  if (range) napi_throw_range_error(env, NULL, msg);
  else napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* The bytes of a typed array of the given type (length in elements), or NULL having thrown. */
static void* typed(napi_env env, napi_value v, napi_typedarray_type want, size_t* length, const char* what) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) {
    throw_error(env, 0, what);
    return NULL;
  }
  napi_typedarray_type type;
  void* data = NULL;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, &data, &ab, &offset) != napi_ok || type != want) {
    throw_error(env, 0, what);
    return NULL;
  }
  /* An empty array may have no backing store; point at something harmless. */
  static uint8_t none;
  return data == NULL ? (void*)&none : data;
}

static int int_arg(napi_env env, napi_value v, int64_t* out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

/*
 * gather and scatter: the same copy with the roles of the two sides swapped. One side is the
 * pieces (an Int32Array of offsets, with `lengths`), the other a contiguous run from one offset.
 */
static napi_value copy_pieces(napi_env env, napi_callback_info info, int scatter) {
  const char* name = scatter ? "scatter" : "gather";
  char msg[96];
  size_t argc = 6;
  napi_value a[6];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 6) {
    snprintf(msg, sizeof msg, "%s takes 6 arguments", name);
    return throw_error(env, 0, msg);
  }
  size_t dstLen, srcLen, offLen, lenLen;
  snprintf(msg, sizeof msg, "%s: dst and src must be Uint8Arrays, the offsets and lengths Int32Arrays", name);
  uint8_t* dst = typed(env, a[0], napi_uint8_array, &dstLen, msg);
  if (dst == NULL) return NULL;
  uint8_t* src = typed(env, a[2], napi_uint8_array, &srcLen, msg);
  if (src == NULL) return NULL;
  int32_t* offs = typed(env, a[scatter ? 1 : 3], napi_int32_array, &offLen, msg);
  if (offs == NULL) return NULL;
  int32_t* lens = typed(env, a[4], napi_int32_array, &lenLen, msg);
  if (lens == NULL) return NULL;
  int64_t runOffset, count;
  if (!int_arg(env, a[scatter ? 3 : 1], &runOffset) || !int_arg(env, a[5], &count)) {
    snprintf(msg, sizeof msg, "%s: the run's offset and count must be non-negative integers", name);
    return throw_error(env, 1, msg);
  }
  if ((uint64_t)count > offLen || (uint64_t)count > lenLen) {
    snprintf(msg, sizeof msg, "%s: count exceeds the offsets or lengths", name);
    return throw_error(env, 1, msg);
  }
  /* The pieces' side and the run's side. */
  size_t piecesLen = scatter ? dstLen : srcLen;
  size_t runLen = scatter ? srcLen : dstLen;
  uint64_t total = 0;
  for (int64_t i = 0; i < count; i++) {
    if (offs[i] < 0 || lens[i] < 0 || (uint64_t)offs[i] + (uint64_t)lens[i] > piecesLen) {
      snprintf(msg, sizeof msg, "%s: piece %lld lies outside its buffer", name, (long long)i);
      return throw_error(env, 1, msg);
    }
    total += (uint64_t)lens[i];
  }
  if ((uint64_t)runOffset > runLen || total > runLen - (uint64_t)runOffset) {
    snprintf(msg, sizeof msg, "%s: the pieces do not fit the run's buffer", name);
    return throw_error(env, 1, msg);
  }
  uint64_t at = (uint64_t)runOffset;
  for (int64_t i = 0; i < count; i++) {
    /* memmove: the two sides may be views of one buffer. */
    if (scatter) memmove(dst + offs[i], src + at, (size_t)lens[i]);
    else memmove(dst + at, src + offs[i], (size_t)lens[i]);
    at += (uint64_t)lens[i];
  }
  return NULL;
}

static napi_value gather(napi_env env, napi_callback_info info) {
  return copy_pieces(env, info, 0);
}

static napi_value scatter(napi_env env, napi_callback_info info) {
  return copy_pieces(env, info, 1);
}

NAPI_MODULE_INIT() {
  napi_value fn, version;
  if (napi_create_function(env, "gather", NAPI_AUTO_LENGTH, gather, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "gather", fn);
  if (napi_create_function(env, "scatter", NAPI_AUTO_LENGTH, scatter, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "scatter", fn);
  napi_create_uint32(env, BULKCOPY_VERSION, &version);
  napi_set_named_property(env, exports, "version", version);
  return exports;
}
