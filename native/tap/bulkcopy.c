/*
 * tlpwire's bulk-copy addon (Node-API, plain C, any platform): the DMA paths' many small copies
 * done in one call. JavaScript copies 256 bytes with set(subarray(...)), about 90 ns of which most
 * is making the view (and collecting it later); here a whole run of TLP payloads costs one call
 * and a memcpy each. src/core/bulk-copy.ts loads it and falls back to JavaScript without it.
 *
 *   gather(dst, dstOffset, src, srcOffsets, lengths, count)
 *     piece i is src[srcOffsets[i], srcOffsets[i] + lengths[i]); the pieces land back to back
 *     in dst from dstOffset (the payloads of received MWr TLPs into host RAM).
 *   copyMany(dsts, dstIndex, dstOffsets, srcs, srcIndex, srcOffsets, lengths, count)
 *     piece i goes from srcs[srcIndex[i]] at srcOffsets[i] to dsts[dstIndex[i]] at dstOffsets[i]
 *     (a write's bytes into its MWr payloads, RAM pages into CplD payloads, CplD payloads into
 *     callers' buffers).
 *     dsts and srcs are arrays of Uint8Arrays.
 *
 * dst and src are Uint8Arrays, the offsets, indexes and lengths Int32Arrays.
 *
 * Every range is checked before anything is copied: bad arguments throw a RangeError or
 * TypeError and copy nothing.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BULKCOPY_VERSION 2

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

static napi_value gather(napi_env env, napi_callback_info info) {
  const char* name = "gather";
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
  int32_t* offs = typed(env, a[3], napi_int32_array, &offLen, msg);
  if (offs == NULL) return NULL;
  int32_t* lens = typed(env, a[4], napi_int32_array, &lenLen, msg);
  if (lens == NULL) return NULL;
  int64_t runOffset, count;
  if (!int_arg(env, a[1], &runOffset) || !int_arg(env, a[5], &count)) {
    snprintf(msg, sizeof msg, "%s: the run's offset and count must be non-negative integers", name);
    return throw_error(env, 1, msg);
  }
  if ((uint64_t)count > offLen || (uint64_t)count > lenLen) {
    snprintf(msg, sizeof msg, "%s: count exceeds the offsets or lengths", name);
    return throw_error(env, 1, msg);
  }
  /* The offsets and lengths are checked and used from a copy of our own: the copies could
   * otherwise change them between the check and the use (they may share memory with dst). */
  int32_t* snap = malloc(2 * (size_t)(count > 0 ? count : 1) * sizeof(int32_t));
  if (snap == NULL) return throw_error(env, 1, "out of memory");
  memcpy(snap, offs, (size_t)count * sizeof(int32_t));
  memcpy(snap + count, lens, (size_t)count * sizeof(int32_t));
  offs = snap;
  lens = snap + count;
  /* The pieces are in src, the run in dst. */
  size_t piecesLen = srcLen;
  size_t runLen = dstLen;
  uint64_t total = 0;
  for (int64_t i = 0; i < count; i++) {
    if (offs[i] < 0 || lens[i] < 0 || (uint64_t)offs[i] + (uint64_t)lens[i] > piecesLen) {
      snprintf(msg, sizeof msg, "%s: piece %lld lies outside its buffer", name, (long long)i);
      free(snap);
      return throw_error(env, 1, msg);
    }
    total += (uint64_t)lens[i];
  }
  if ((uint64_t)runOffset > runLen || total > runLen - (uint64_t)runOffset) {
    snprintf(msg, sizeof msg, "%s: the pieces do not fit the run's buffer", name);
    free(snap);
    return throw_error(env, 1, msg);
  }
  uint64_t at = (uint64_t)runOffset;
  for (int64_t i = 0; i < count; i++) {
    /* memmove: the two sides may be views of one buffer. */
    memmove(dst + at, src + offs[i], (size_t)lens[i]);
    at += (uint64_t)lens[i];
  }
  free(snap);
  return NULL;
}

typedef struct {
  uint8_t* data;
  size_t len;
} buffer_ref;

/*
 * Takes every element of `arr` first (a getter or proxy may run JavaScript there), and only then
 * looks at the typed arrays, so nothing can change under the checks. 0 having thrown on failure.
 */
static int take_elements(napi_env env, napi_value arr, uint32_t n, napi_value* out, const char* what) {
  for (uint32_t k = 0; k < n; k++) {
    if (napi_get_element(env, arr, k, &out[k]) != napi_ok) {
      throw_error(env, 0, what);
      return 0;
    }
  }
  return 1;
}

static int resolve_all(napi_env env, napi_value* values, uint32_t n, buffer_ref* refs, const char* what) {
  for (uint32_t k = 0; k < n; k++) {
    refs[k].data = typed(env, values[k], napi_uint8_array, &refs[k].len, what);
    if (refs[k].data == NULL) return 0;
  }
  return 1;
}

static napi_value copy_many(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value a[8];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 8) return throw_error(env, 0, "copyMany takes 8 arguments");
  bool isArr = false;
  uint32_t dstsLen = 0, srcsLen = 0;
  if (napi_is_array(env, a[0], &isArr) != napi_ok || !isArr || napi_get_array_length(env, a[0], &dstsLen) != napi_ok) return throw_error(env, 0, "copyMany: dsts must be an array of Uint8Arrays");
  if (napi_is_array(env, a[3], &isArr) != napi_ok || !isArr || napi_get_array_length(env, a[3], &srcsLen) != napi_ok) return throw_error(env, 0, "copyMany: srcs must be an array of Uint8Arrays");
  int64_t count;
  if (!int_arg(env, a[7], &count)) return throw_error(env, 1, "copyMany: count must be a non-negative integer");
  size_t nb = (size_t)dstsLen + srcsLen;
  napi_value* values = malloc((nb > 0 ? nb : 1) * sizeof(napi_value));
  buffer_ref* refs = malloc((nb > 0 ? nb : 1) * sizeof(buffer_ref));
  int32_t* snap = malloc(5 * (size_t)(count > 0 ? count : 1) * sizeof(int32_t));
  napi_value result = NULL;
  if (values == NULL || refs == NULL || snap == NULL) {
    throw_error(env, 1, "copyMany: out of memory");
    goto done;
  }
  /* 1. The buffers' handles (JavaScript may run), 2. the index arrays, copied, 3. the buffers. */
  if (!take_elements(env, a[0], dstsLen, values, "copyMany: dsts must be an array of Uint8Arrays")) goto done;
  if (!take_elements(env, a[3], srcsLen, values + dstsLen, "copyMany: srcs must be an array of Uint8Arrays")) goto done;
  const char* types = "copyMany: the indexes, offsets and lengths must be Int32Arrays";
  napi_value arrays[5] = {a[1], a[2], a[4], a[5], a[6]};
  for (int k = 0; k < 5; k++) {
    size_t n;
    int32_t* data = typed(env, arrays[k], napi_int32_array, &n, types);
    if (data == NULL) goto done;
    if ((uint64_t)count > n) {
      throw_error(env, 1, "copyMany: count exceeds the indexes, offsets or lengths");
      goto done;
    }
    memcpy(snap + (size_t)k * (size_t)count, data, (size_t)count * sizeof(int32_t));
  }
  if (!resolve_all(env, values, dstsLen, refs, "copyMany: dsts must be an array of Uint8Arrays")) goto done;
  if (!resolve_all(env, values + dstsLen, srcsLen, refs + dstsLen, "copyMany: srcs must be an array of Uint8Arrays")) goto done;
  {
    const int32_t* dstIdx = snap;
    const int32_t* dstOff = snap + count;
    const int32_t* srcIdx = snap + 2 * count;
    const int32_t* srcOff = snap + 3 * count;
    const int32_t* lens = snap + 4 * count;
    const buffer_ref* dsts = refs;
    const buffer_ref* srcs = refs + dstsLen;
    /* Nothing is copied unless every piece is in range. */
    for (int64_t i = 0; i < count; i++) {
      if (dstIdx[i] < 0 || (uint32_t)dstIdx[i] >= dstsLen || srcIdx[i] < 0 || (uint32_t)srcIdx[i] >= srcsLen) {
        throw_error(env, 1, "copyMany: an index is outside dsts or srcs");
        goto done;
      }
      if (lens[i] < 0 || dstOff[i] < 0 || srcOff[i] < 0 || (uint64_t)dstOff[i] + (uint64_t)lens[i] > dsts[dstIdx[i]].len ||
          (uint64_t)srcOff[i] + (uint64_t)lens[i] > srcs[srcIdx[i]].len) {
        throw_error(env, 1, "copyMany: a piece lies outside its buffer");
        goto done;
      }
    }
    for (int64_t i = 0; i < count; i++) memmove(dsts[dstIdx[i]].data + dstOff[i], srcs[srcIdx[i]].data + srcOff[i], (size_t)lens[i]);
  }
done:
  free(values);
  free(refs);
  free(snap);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn, version;
  if (napi_create_function(env, "gather", NAPI_AUTO_LENGTH, gather, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "gather", fn);
  if (napi_create_function(env, "copyMany", NAPI_AUTO_LENGTH, copy_many, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "copyMany", fn);
  napi_create_uint32(env, BULKCOPY_VERSION, &version);
  napi_set_named_property(env, exports, "version", version);
  return exports;
}
