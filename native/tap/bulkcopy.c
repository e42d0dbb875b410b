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
 *   scanCompletions(msg, off, end, table, dests, out, requesterId, mps, rcb)
 *     the run of plain CplDs at msg[off…end) for the reads a tag table describes, each payload
 *     copied into its read's buffer; returns where it stopped (see scan_completions below).
 *   completionRun(out, at, src, byteCount, lowerAddress, srcOffset, lead, bytes, nParts, tags,
 *                 first, count, stride, dw0, dw1, dw2)
 *     the CplD items answering a run of reads, headers and payloads, into a batch (see
 *     completion_run below).
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

#define BULKCOPY_VERSION 4

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

/*
 * scanCompletions(msg, off, end, table, dests, out, requesterId, mps, rcb)
 *
 * The DMA read path's CplDs in one call. Walks the tlpwire items of msg from off (before end):
 * [type u8][flags u8][len u16 BE][body], takes each one that is a plain successful CplD for an
 * outstanding read the table says may be taken here, copies its payload into that read's
 * buffer, and stops at the first item it does not take (returning its offset), which the
 * JavaScript path then handles with every rule it has. So this only has to recognise the common
 * case exactly; anything unusual is simply not taken.
 *
 * table: 8 int32 per tag (tags 0..1023): armed (1 = may be taken here), tc, destId, destOffset,
 * next (the low 32 bits of the address the next completion starts at), remaining (bytes owed).
 * out: [count, tag0, n0, tag1, n1, …]: what was taken, in order.
 *
 * Per CplD it costs a header check and a memmove: the destinations are fetched once per call
 * (their own slot for destIds below SCAN_CACHE, one of SCAN_FAR shared ones above), all before
 * the scan, and nothing is allocated.
 */
#define SCAN_STRIDE 8
#define SCAN_TAGS 1024
#define SCAN_CACHE 256 /* destinations with their own slot */
#define SCAN_FAR 16    /* and how many others one call can use */
#define CPLD_FMT_TYPE 0x4A
#define ITEM_TLP 0x01
#define ITEM_HEADER 4
#define CPL_HEADER 12

enum { E_ARMED, E_TC, E_DEST, E_OFFSET, E_NEXT, E_REMAINING };

/* A typed array's bytes (any element type) without throwing: 1 if v is one. */
static int bytes_of(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type type;
  size_t n, offset;
  void* p = NULL;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &n, &p, &ab, &offset) != napi_ok) return 0;
  size_t size;
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: size = 1; break;
    case napi_int16_array:
    case napi_uint16_array: size = 2; break;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: size = 4; break;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array: size = 8; break;
    default: return 0;
  }
  *data = (uint8_t*)p;
  *len = n * size;
  return 1;
}

typedef struct {
  napi_value v;
  uint8_t* data; /* NULL: not a typed array (or no bytes) */
  size_t len;
} view;

/* Whether v still has the bytes it had (JavaScript may have detached or shrunk its buffer). */
static int unchanged(napi_env env, const view* w) {
  uint8_t* data = NULL;
  size_t len = 0;
  return bytes_of(env, w->v, &data, &len) && data == w->data && len == w->len;
}

/* Whether the byte ranges [a, a + alen) and [b, b + blen) share a byte. */
static int overlaps(const void* a, size_t alen, const void* b, size_t blen) {
  const uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  return alen > 0 && blen > 0 && x < y + blen && y < x + alen;
}

static inline void put_be32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static inline uint32_t be32(const uint8_t* p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

typedef struct {
  const uint8_t* h; /* the TLP */
  size_t len;       /* the item's body length */
  uint32_t lengthDw, byteCount, tag, tc, lowerAddress;
} cpld;

/* Checks a.–f.: the item at p is a whole, plain, successful CplD for requester `want`. */
static inline int plain_cpld(const uint8_t* msg, size_t p, size_t end, uint32_t want, cpld* c) {
  /* a. A whole TLP item with at least a 3-DW header. */
  if (p + ITEM_HEADER + CPL_HEADER > end || msg[p] != ITEM_TLP) return 0;
  const size_t len = (size_t)msg[p + 2] << 8 | msg[p + 3];
  const uint8_t* h = msg + p + ITEM_HEADER;
  if (p + ITEM_HEADER + len > end) return 0;
  /* b.–d. CplD (not CplDLk), no digest, not poisoned, its Length matching the item. */
  if (h[0] != CPLD_FMT_TYPE || (h[2] & 0xC0) != 0) return 0;
  uint32_t lengthDw = (uint32_t)(h[2] & 3) << 8 | h[3];
  if (lengthDw == 0) lengthDw = 1024;
  if (len != CPL_HEADER + 4 * (size_t)lengthDw) return 0;
  /* e.–f. Successful, for us, and whose. */
  const uint32_t dw1 = be32(h + 4), dw2 = be32(h + 8);
  if ((dw1 >> 13 & 7) != 0 || dw2 >> 16 != want) return 0;
  c->h = h;
  c->len = len;
  c->lengthDw = lengthDw;
  c->byteCount = (dw1 & 0xFFF) == 0 ? 4096 : dw1 & 0xFFF;
  c->tag = (uint32_t)(h[1] >> 7 & 1) << 9 | (uint32_t)(h[1] >> 3 & 1) << 8 | (dw2 >> 8 & 0xFF);
  c->tc = h[1] >> 4 & 7;
  c->lowerAddress = dw2 & 0x7F;
  return 1;
}

/* Where destination `id`'s view is kept: its own slot below SCAN_CACHE, else one of the few
 * far slots (added when `add`); NULL when there is none. */
static inline view* dest_view(view* near, uint8_t* nearState, view* far, int32_t* farId, int* nfar, int32_t id, int add, int* fresh) {
  *fresh = 0;
  if (id < SCAN_CACHE) {
    if (nearState[id] == 0) {
      if (!add) return NULL;
      nearState[id] = 1;
      *fresh = 1;
    }
    return &near[id];
  }
  for (int j = 0; j < *nfar; j++)
    if (farId[j] == id) return &far[j];
  if (!add || *nfar == SCAN_FAR) return NULL;
  farId[*nfar] = id;
  *fresh = 1;
  return &far[(*nfar)++];
}

static napi_value scan_completions(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value a[9];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 9) return throw_error(env, 0, "scanCompletions takes 9 arguments");
  size_t msgLen, tableLen, outLen;
  uint8_t* msg = typed(env, a[0], napi_uint8_array, &msgLen, "scanCompletions: msg must be a Uint8Array");
  if (msg == NULL) return NULL;
  int32_t* table = typed(env, a[3], napi_int32_array, &tableLen, "scanCompletions: table must be an Int32Array");
  if (table == NULL) return NULL;
  bool isArr = false;
  if (napi_is_array(env, a[4], &isArr) != napi_ok || !isArr) return throw_error(env, 0, "scanCompletions: dests must be an array of Uint8Arrays");
  int32_t* out = typed(env, a[5], napi_int32_array, &outLen, "scanCompletions: out must be an Int32Array");
  if (out == NULL) return NULL;
  int64_t off, end, requesterId, mps, rcb;
  if (!int_arg(env, a[1], &off) || !int_arg(env, a[2], &end) || (uint64_t)end > msgLen || off > end) {
    return throw_error(env, 1, "scanCompletions: off and end must be integers with 0 <= off <= end <= msg.length");
  }
  if (tableLen < (size_t)SCAN_TAGS * SCAN_STRIDE) return throw_error(env, 1, "scanCompletions: table must hold 8 int32 for each of 1024 tags");
  if (outLen < 1) return throw_error(env, 1, "scanCompletions: out must hold at least the count");
  if (!int_arg(env, a[6], &requesterId) || requesterId > 0xFFFF) return throw_error(env, 1, "scanCompletions: requesterId must be an integer 0..65535");
  if (!int_arg(env, a[7], &mps) || mps < 128 || mps > 4096) return throw_error(env, 1, "scanCompletions: mps must be an integer 128..4096");
  if (!int_arg(env, a[8], &rcb) || (rcb != 64 && rcb != 128)) return throw_error(env, 1, "scanCompletions: rcb must be 64 or 128");

  const size_t cap = (outLen - 1) / 2;
  const uint32_t want = (uint32_t)requesterId;
  const size_t stop = (size_t)end;
  cpld c;
  int fresh;
  /* Each destination's bytes, fetched once per call. */
  view near[SCAN_CACHE], far[SCAN_FAR];
  uint8_t nearState[SCAN_CACHE];
  int32_t farId[SCAN_FAR];
  int nfar = 0;
  memset(nearState, 0, sizeof nearState);

  /*
   * 1. The destinations the items may need, listed first (no JavaScript runs while msg and table
   * are read here), then fetched. Fetching an element can run JavaScript (a getter), which could
   * change or detach any buffer; so everything is looked at again after the fetches (2.), and
   * the scan itself (3.) runs no JavaScript at all. Only what cannot change during the scan is
   * checked here (armed only ever goes from 1 to 0), so a few may be fetched that it stops before.
   */
  view* listed[SCAN_CACHE + SCAN_FAR];
  int32_t listedId[SCAN_CACHE + SCAN_FAR];
  int nlisted = 0;
  {
    size_t p = (size_t)off;
    for (size_t k = 0; k < cap && plain_cpld(msg, p, stop, want, &c); k++, p += ITEM_HEADER + c.len) {
      const int32_t* e = table + (size_t)c.tag * SCAN_STRIDE;
      if (e[E_ARMED] != 1 || (uint32_t)e[E_TC] != c.tc || e[E_DEST] < 0) break;
      view* w = dest_view(near, nearState, far, farId, &nfar, e[E_DEST], 1, &fresh);
      if (w == NULL) break;
      if (!fresh) continue;
      w->data = NULL;
      listed[nlisted] = w;
      listedId[nlisted++] = e[E_DEST];
    }
  }
  for (int j = 0; j < nlisted; j++) {
    if (napi_get_element(env, a[4], (uint32_t)listedId[j], &listed[j]->v) == napi_ok) continue;
    /* A throwing getter: not an error of ours. The scan stops at this destination's first
     * CplD and the JavaScript path meets the getter again; the rest are not needed. */
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
    for (; j < nlisted; j++) {
      if (listedId[j] < SCAN_CACHE) nearState[listedId[j]] = 2;
      else farId[listed[j] - far] = -1;
    }
  }
  /* 2. If JavaScript may have run, msg, table and out must be as they were; then the bytes. */
  if (nlisted > 0) {
    view fixed[3] = {{a[0], msg, msgLen}, {a[3], (uint8_t*)table, tableLen * 4}, {a[5], (uint8_t*)out, outLen * 4}};
    int same[3];
    for (int k = 0; k < 3; k++) same[k] = unchanged(env, &fixed[k]);
    if (!same[0] || !same[1] || !same[2]) {
      if (same[2]) out[0] = 0;
      napi_value result;
      return napi_create_double(env, (double)off, &result) == napi_ok ? result : NULL;
    }
    for (int j = 0; j < nlisted; j++) {
      const int failed = listedId[j] < SCAN_CACHE ? nearState[listedId[j]] != 1 : farId[listed[j] - far] < 0;
      if (failed || !bytes_of(env, listed[j]->v, &listed[j]->data, &listed[j]->len)) listed[j]->data = NULL;
    }
  }

  /* 3. The scan. */
  size_t k = 0;
  size_t p = (size_t)off;
  out[0] = 0;
  while (k < cap && plain_cpld(msg, p, stop, want, &c)) {
    /* g.–h. A read outstanding on that tag and TC, and this the completion it expects next. */
    int32_t* e = table + (size_t)c.tag * SCAN_STRIDE;
    if (e[E_ARMED] != 1 || (uint32_t)e[E_TC] != c.tc) break;
    const uint32_t next = (uint32_t)e[E_NEXT];
    const int32_t remaining = e[E_REMAINING];
    const uint32_t dataLength = 4 * c.lengthDw;
    if ((int64_t)c.byteCount != remaining || c.lowerAddress != (next & 0x7F) || dataLength > (uint64_t)mps) break;
    /* i. The last completion carries exactly the rest; any other ends at an RCB boundary. */
    const uint32_t lead = next & 3;
    uint32_t n = dataLength - lead;
    if (n >= (uint32_t)remaining) {
      if (c.lengthDw != (lead + (uint32_t)remaining + 3) / 4) break;
      n = (uint32_t)remaining;
    } else if (((next + n) & (uint32_t)(rcb - 1)) != 0) {
      break;
    }
    /* j. The read's buffer (fetched in 1., unless something there stopped it). */
    const int32_t destId = e[E_DEST];
    const int32_t destOffset = e[E_OFFSET];
    if (destId < 0 || destOffset < 0) break;
    const view* w = dest_view(near, nearState, far, farId, &nfar, destId, 0, &fresh);
    if (w == NULL || (destId < SCAN_CACHE && nearState[destId] != 1)) break;
    if (w->data == NULL || (uint64_t)destOffset + n > w->len) break;
    /* k. Take it. memmove: the buffer may be a view of msg. */
    memmove(w->data + destOffset, c.h + CPL_HEADER + lead, n);
    e[E_OFFSET] = (int32_t)((uint32_t)destOffset + n);
    e[E_NEXT] = (int32_t)(next + n);
    e[E_REMAINING] = remaining - (int32_t)n;
    if (e[E_REMAINING] == 0) e[E_ARMED] = 0;
    out[1 + 2 * k] = (int32_t)c.tag;
    out[2 + 2 * k] = (int32_t)n;
    out[0] = (int32_t)++k;
    p += ITEM_HEADER + c.len;
  }
  napi_value result;
  if (napi_create_double(env, (double)p, &result) != napi_ok) return NULL;
  return result;
}

/*
 * completionRun(out, at, src, byteCount, lowerAddress, srcOffset, lead, bytes, nParts,
 *               tags, first, count, stride, dw0, dw1, dw2)
 *
 * The root complex's answer to a run of reads, placed as tlpwire items: for each of `count` reads
 * r (tag tags[first + r]) and each of its nParts parts i, a TLP item [1][0][len u16 BE] whose body
 * is a CplD: DW0 = dw0 | T9, T8 of the tag | the Length of the part's payload; DW1 = dw1 | Byte
 * Count; DW2 = dw2 | tag bits 7:0 << 8 | Lower Address; then the payload, lead[i] zero bytes,
 * bytes[i] bytes of src from srcOffset[i] + r × stride, zeros to the end of its last DW. dw0..dw2
 * carry what every completion of the run shares (the JavaScript encoder makes them). Writes at
 * out[at…] and returns the number of bytes written. Every range is checked before anything is
 * written: bad arguments (out sharing memory with anything else passed included) throw and write
 * nothing.
 */
static napi_value completion_run(napi_env env, napi_callback_info info) {
  size_t argc = 16;
  napi_value a[16];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 16) return throw_error(env, 0, "completionRun takes 16 arguments");
  size_t outLen, srcLen, tagsLen, partLen[5];
  uint8_t* out = typed(env, a[0], napi_uint8_array, &outLen, "completionRun: out must be a Uint8Array");
  if (out == NULL) return NULL;
  uint8_t* src = typed(env, a[2], napi_uint8_array, &srcLen, "completionRun: src must be a Uint8Array");
  if (src == NULL) return NULL;
  int32_t* part[5];
  for (int k = 0; k < 5; k++) {
    part[k] = typed(env, a[3 + k], napi_int32_array, &partLen[k], "completionRun: the parts must be Int32Arrays");
    if (part[k] == NULL) return NULL;
  }
  uint16_t* tags = typed(env, a[9], napi_uint16_array, &tagsLen, "completionRun: tags must be a Uint16Array");
  if (tags == NULL) return NULL;
  int64_t at, nParts, first, count, stride, w[3];
  if (!int_arg(env, a[1], &at) || !int_arg(env, a[8], &nParts) || !int_arg(env, a[10], &first) || !int_arg(env, a[11], &count) ||
      !int_arg(env, a[12], &stride) || !int_arg(env, a[13], &w[0]) || !int_arg(env, a[14], &w[1]) || !int_arg(env, a[15], &w[2])) {
    return throw_error(env, 1, "completionRun: at, nParts, first, count, stride and the header words must be non-negative integers");
  }
  if (w[0] > 0xFFFFFFFF || w[1] > 0xFFFFFFFF || w[2] > 0xFFFFFFFF) return throw_error(env, 1, "completionRun: a header word is not 32 bits");
  for (int k = 0; k < 5; k++) {
    if ((uint64_t)nParts > partLen[k]) return throw_error(env, 1, "completionRun: nParts exceeds a parts array");
  }
  if ((uint64_t)first + (uint64_t)count > tagsLen) return throw_error(env, 1, "completionRun: first + count exceeds tags");
  if (count > 0x100000 || stride > 0x40000000) return throw_error(env, 1, "completionRun: count or stride out of range");
  /* What is read while out is written must not share memory with out: the checks below would not
   * hold for it any more (and a copy between overlapping ranges is undefined). */
  int shared = overlaps(out, outLen, src, srcLen) || overlaps(out, outLen, tags, tagsLen * 2);
  for (int k = 0; k < 5; k++) shared = shared || overlaps(out, outLen, part[k], partLen[k] * 4);
  if (shared) return throw_error(env, 1, "completionRun: out shares memory with src, tags or a parts array");
  uint64_t perRead = 0;
  for (int64_t i = 0; i < nParts; i++) {
    const int32_t bc = part[0][i], la = part[1][i], so = part[2][i], lead = part[3][i], n = part[4][i];
    const int64_t payload = ((int64_t)lead + n + 3) & ~(int64_t)3;
    if (lead < 0 || lead > 3 || n < 1 || payload > 4096 || bc < 1 || bc > 4096 || la < 0 || la > 127 || so < 0) {
      return throw_error(env, 1, "completionRun: a part's byte count, lower address, lead or size is out of range");
    }
    if (count > 0 && (uint64_t)so + (uint64_t)n + (uint64_t)(count - 1) * (uint64_t)stride > srcLen) {
      return throw_error(env, 1, "completionRun: a part's source range is outside src");
    }
    perRead += 4 + 12 + (uint64_t)payload;
  }
  const uint64_t total = perRead * (uint64_t)count;
  if ((uint64_t)at + total > outLen) return throw_error(env, 1, "completionRun: out is too small");

  uint8_t* p = out + at;
  const uint32_t dw0 = (uint32_t)w[0], dw1 = (uint32_t)w[1], dw2 = (uint32_t)w[2];
  for (int64_t r = 0; r < count; r++) {
    const uint32_t tag = tags[first + r];
    const uint32_t tagBits0 = (tag >> 9 & 1) << 23 | (tag >> 8 & 1) << 19;
    const uint32_t tagBits2 = (tag & 0xFF) << 8;
    for (int64_t i = 0; i < nParts; i++) {
      const uint32_t lead = (uint32_t)part[3][i], n = (uint32_t)part[4][i];
      const uint32_t payload = (lead + n + 3) & ~3u;
      const uint32_t len = 12 + payload;
      p[0] = 1;
      p[1] = 0;
      p[2] = (uint8_t)(len >> 8);
      p[3] = (uint8_t)len;
      put_be32(p + 4, dw0 | tagBits0 | (payload >> 2 & 0x3FF));
      put_be32(p + 8, dw1 | ((uint32_t)part[0][i] & 0xFFF));
      put_be32(p + 12, dw2 | tagBits2 | (uint32_t)part[1][i]);
      uint8_t* d = p + 16;
      if (lead) memset(d, 0, lead);
      memcpy(d + lead, src + (size_t)part[2][i] + (size_t)(r * stride), n);
      if (lead + n != payload) memset(d + lead + n, 0, payload - lead - n);
      p += 4 + len;
    }
  }
  napi_value result;
  if (napi_create_double(env, (double)total, &result) != napi_ok) return NULL;
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn, version;
  if (napi_create_function(env, "gather", NAPI_AUTO_LENGTH, gather, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "gather", fn);
  if (napi_create_function(env, "copyMany", NAPI_AUTO_LENGTH, copy_many, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "copyMany", fn);
  if (napi_create_function(env, "scanCompletions", NAPI_AUTO_LENGTH, scan_completions, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "scanCompletions", fn);
  if (napi_create_function(env, "completionRun", NAPI_AUTO_LENGTH, completion_run, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "completionRun", fn);
  napi_create_uint32(env, BULKCOPY_VERSION, &version);
  napi_set_named_property(env, exports, "version", version);
  return exports;
}
