/**
 * Loader for tlpwire's TAP addon (native/tap/tap.c, built by scripts/build-native.mjs into
 * native/tap/build/Release/tap.node) and the translation of its errno errors into one-line
 * messages that say what is missing. Nothing else in tlpwire needs the addon: it is loaded only
 * when a `tap:` backend is opened.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { TlpwireError, errorMessage } from '../core/index.js';

/** The errors the addon throws or reports: an Error with the errno name as `code`. */
export interface NativeTapError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

/** Slab delivery: frame i is `lengths[i]` bytes, the frames back to back in `batch`. */
export type NativeSlabCallback = (batch: Buffer, count: number) => void;
/** Array delivery: one Buffer per frame. */
export type NativeArrayCallback = (frames: Buffer[]) => void;

/** One open TAP (the shape of the addon's `Tap` objects). */
export interface NativeTap {
  setCallbacks(onFrames: NativeSlabCallback, onError: (err: NativeTapError) => void, lengths: Uint32Array): void;
  setCallbacks(onFrames: NativeArrayCallback, onError: (err: NativeTapError) => void, lengths: null): void;
  startReading(): void;
  stopReading(): void;
  /** Whether the poll keeps the event loop alive (default true). */
  ref(keepAlive: boolean): void;
  /** 0, or the errno (EAGAIN: kernel queue full; EIO: interface down; EBADFD: interface gone). */
  write(frame: Uint8Array): number;
  /** Frames written before the first error (see lastErrno). */
  writeMany(frames: readonly Uint8Array[], count?: number): number;
  lastErrno(): number;
  setUp(up: boolean): void;
  /** The interface flags (IFF_UP 0x1, IFF_RUNNING 0x40, …). */
  flags(): number;
  setCarrier(on: boolean): void;
  setMtu(mtu: number): void;
  getMtu(): number;
  setPersist(on: boolean): void;
  setNonBlocking(on: boolean): void;
  close(): void;
  name(): string;
  fd(): number;
}

export interface TapAddon {
  Tap: new (name: string) => NativeTap;
  version: number;
}

/** errno values the TS side switches on (Linux numbering; the addon only builds on Linux). */
export const TAP_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  EBADFD: 77,
} as const;

export const DEFAULT_TAP_ADDON_PATH = fileURLToPath(new URL('../../native/tap/build/Release/tap.node', import.meta.url));

const BUILD_HINT = 'run npm run build:native; needs python3, make and a C compiler';

const loaded = new Map<string, TapAddon>();

/**
 * Loads the addon (once per path). Throws ERR_TAP with a message that says why it is unavailable.
 * `path` is for tests and unusual layouts; src/ and dist/ both sit two levels below the root.
 */
export function loadTapAddon(path: string = DEFAULT_TAP_ADDON_PATH): TapAddon {
  const cached = loaded.get(path);
  if (cached !== undefined) return cached;
  if (process.platform !== 'linux') {
    throw new TlpwireError('ERR_TAP', `tap: needs Linux (TAP interfaces are a Linux feature; this is ${process.platform})`);
  }
  if (!existsSync(path)) {
    throw new TlpwireError('ERR_TAP', `tap: native addon not built: ${BUILD_HINT}`);
  }
  let mod: unknown;
  try {
    mod = createRequire(import.meta.url)(path);
  } catch (e) {
    // Typically a build for another Node ABI or architecture (a copied node_modules).
    throw new TlpwireError('ERR_TAP', `tap: native addon failed to load (${firstLine(errorMessage(e))}): ${BUILD_HINT}`, {
      cause: e,
    });
  }
  if (!isTapAddon(mod)) {
    throw new TlpwireError('ERR_TAP', `tap: ${path} is not tlpwire's TAP addon: ${BUILD_HINT}`);
  }
  loaded.set(path, mod);
  return mod;
}

export type TapAddonStatus = { available: true; path: string; version: number } | { available: false; path: string; reason: string };

/** Whether `tap:` can work here, for `tlpwire doctor`-style reports; never throws. */
export function tapAddonStatus(path: string = DEFAULT_TAP_ADDON_PATH): TapAddonStatus {
  try {
    const addon = loadTapAddon(path);
    return { available: true, path, version: addon.version };
  } catch (e) {
    return { available: false, path, reason: errorMessage(e) };
  }
}

export function isNativeTapError(e: unknown): e is NativeTapError {
  return e instanceof Error && typeof (e as Partial<NativeTapError>).errno === 'number' && typeof (e as Partial<NativeTapError>).code === 'string';
}

/**
 * One line that says what is missing, for an error the addon threw while opening or configuring
 * `ifname`. Anything unrecognised keeps the addon's own message (syscall, strerror, errno name).
 */
export function describeTapError(e: unknown, ifname: string): TlpwireError {
  if (!isNativeTapError(e)) {
    return e instanceof TlpwireError ? e : new TlpwireError('ERR_TAP', `tap: ${ifname}: ${errorMessage(e)}`, { cause: e });
  }
  const uid = process.getuid?.() ?? 1000;
  const make = (msg: string): TlpwireError => new TlpwireError('ERR_TAP', `tap: ${msg}`, { cause: e });
  const sys = e.syscall;
  if (sys.startsWith('open')) {
    if (e.errno === TAP_ERRNO.ENOENT || e.errno === TAP_ERRNO.ENODEV) {
      return make('/dev/net/tun missing (load the tun module with modprobe tun; in a container pass --device /dev/net/tun)');
    }
    if (e.errno === TAP_ERRNO.EACCES || e.errno === TAP_ERRNO.EPERM) {
      return make(`no access to /dev/net/tun (needs read and write permission for uid ${uid}; it is normally mode 0666)`);
    }
  }
  if (sys === 'TUNSETIFF') {
    switch (e.errno) {
      case TAP_ERRNO.EPERM:
        return make(`need CAP_NET_ADMIN or a TAP created with 'ip tuntap add dev ${ifname} mode tap user ${uid}'`);
      case TAP_ERRNO.EBUSY:
        return make(`${ifname} is already open in another process (a TAP has one reader)`);
      case TAP_ERRNO.EINVAL:
        return make(`${ifname} exists and is not a TAP (a TUN device or another kind of interface)`);
      default:
        break;
    }
  }
  if (sys === 'SIOCSIFFLAGS' && e.errno === TAP_ERRNO.EPERM) {
    return make(`cannot bring ${ifname} up: need CAP_NET_ADMIN, or run 'ip link set ${ifname} up' beforehand`);
  }
  if (sys === 'SIOCSIFMTU' && e.errno === TAP_ERRNO.EPERM) {
    return make(`cannot set the MTU of ${ifname}: need CAP_NET_ADMIN, or run 'ip link set ${ifname} mtu N' beforehand`);
  }
  if (sys === 'SIOCSIFMTU' && e.errno === TAP_ERRNO.EINVAL) {
    return make(`${ifname} rejected the MTU (Linux allows 68..65535 on a TAP)`);
  }
  if (e.errno === TAP_ERRNO.ENODEV || e.errno === TAP_ERRNO.EBADFD) {
    return make(`${ifname} no longer exists`);
  }
  return make(e.message);
}

/** Linux's rule for interface names (dev_valid_name): 1–15 bytes, not . or .., no '/', ':' or spaces. */
export function validateIfname(ifname: string): void {
  const bytes = Buffer.byteLength(ifname);
  if (bytes === 0 || bytes > 15 || ifname === '.' || ifname === '..' || /[/:\s]/.test(ifname)) {
    throw new TlpwireError(
      'ERR_USAGE',
      `tap: invalid interface name '${ifname}' (1–15 characters, no '/', ':' or whitespace)`,
    );
  }
}

function isTapAddon(m: unknown): m is TapAddon {
  return typeof m === 'object' && m !== null && typeof (m as Partial<TapAddon>).Tap === 'function' && typeof (m as Partial<TapAddon>).version === 'number';
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i < 0 ? s : s.slice(0, i);
}
