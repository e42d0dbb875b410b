/**
 * Error detection and signalling of one function (§6.2): turns a real event seen by the function
 * into the register bits the spec asks for and the error Message (if any) to send upstream.
 *
 *   event                          AER bit (default severity)   legacy Status bit        header
 *   ----------------------------   --------------------------   ----------------------   ------
 *   malformed TLP received         MALF_TLP     (fatal)          —                         yes
 *   unsupported request received   UNSUP        (non-fatal)      —                         yes
 *   completer abort sent           COMP_ABORT   (non-fatal)      Signaled Target Abort     yes
 *   completion timeout             COMP_TIME    (non-fatal)      —                         no
 *   poisoned TLP received          POISON_TLP   (non-fatal)      Detected Parity Error     yes
 *                                                                (+ Master Data Parity Error
 *                                                                for a poisoned completion)
 *   unexpected completion          UNX_COMP     (non-fatal)      —                         yes
 *   ECRC check failed              ECRC         (non-fatal)      —                         yes
 *
 * Role-based error reporting (§6.2.3.2.4): when the error's severity is non-fatal, a completer
 * answering a non-posted request with UR or CA, the receiver of an unexpected completion, and
 * (when the caller says so) a requester that will retry after a timeout or a receiver that
 * handles poisoned data itself, treat it as an Advisory Non-Fatal Error: Correctable Error
 * Detected, AER Advisory Non-Fatal status, and ERR_COR instead of ERR_NONFATAL.
 *
 * Message rules (§6.2.5, §6.2.6): a masked AER error sends nothing; UR sends nothing unless
 * Unsupported Request Reporting Enable is set; ERR_COR needs Correctable Error Reporting Enable;
 * ERR_NONFATAL / ERR_FATAL need their DevCtl enable or SERR# Enable (which also sets Signaled
 * System Error in Status). Device Status bits are set regardless of masks and enables.
 */
import {
  PCI_CFG,
  PCI_COMMAND,
  PCI_ERR_COR,
  PCI_ERR_UNC,
  PCI_ERR_UNC_SEVER_DEFAULT,
  PCI_EXP_DEVSTA,
  PCI_STATUS,
} from '../spec/index.js';
import type { AerCapability } from './aer-capability.js';
import type { ConfigSpace } from './config-space.js';
import type { PcieCapability } from './pcie-capability.js';

export type ErrorMessageName = 'ERR_COR' | 'ERR_NONFATAL' | 'ERR_FATAL';

export interface ErrorReport {
  severity: 'correctable' | 'non-fatal' | 'fatal';
  /** Handled as an Advisory Non-Fatal Error. */
  advisory: boolean;
  /** Masked in the AER mask registers. */
  masked: boolean;
  /** The error Message the function sends (MSG_CODE[message]), or null. */
  message: ErrorMessageName | null;
}

export class PciErrorReporter {
  constructor(
    private readonly space: ConfigSpace,
    private readonly pcie: PcieCapability | null,
    private readonly aer: AerCapability | null,
  ) {}

  /** A TLP that violates the format rules was received (§2.3, §6.2.7). */
  malformedTlp(header?: Uint8Array): ErrorReport {
    return this.uncorrectable(PCI_ERR_UNC.MALF_TLP, header ?? null, false);
  }

  /**
   * A request this function does not support (or that no BAR claims, or that arrived with Memory
   * Space Enable clear) was received. For a non-posted request the function answers UR.
   */
  unsupportedRequest(header: Uint8Array | undefined, options: { nonPosted: boolean }): ErrorReport {
    return this.uncorrectable(PCI_ERR_UNC.UNSUP, header ?? null, options.nonPosted);
  }

  /** The function answered a request with Completer Abort. */
  completerAbort(header: Uint8Array | undefined, options: { nonPosted: boolean }): ErrorReport {
    this.space.hwSet(PCI_CFG.STATUS, 2, PCI_STATUS.SIGNALED_TARGET_ABORT);
    return this.uncorrectable(PCI_ERR_UNC.COMP_ABORT, header ?? null, options.nonPosted);
  }

  /**
   * A request of this function got no completion in time. `advisory`: the requester recovers
   * (retries), so it is an Advisory Non-Fatal Error when non-fatal.
   */
  completionTimeout(options: { advisory?: boolean } = {}): ErrorReport {
    // This model does not log the header of a timed-out request (Completion Timeout
    // Prefix/Header Log Capable is clear), so the Header Log is zeroed when it is captured.
    return this.uncorrectable(PCI_ERR_UNC.COMP_TIME, null, options.advisory ?? false);
  }

  /**
   * A poisoned TLP (EP set) was received. `completion`: it was a completion to this function's
   * request (Master Data Parity Error when Parity Error Response is set). `advisory`: the
   * function handles the poisoned data itself.
   */
  poisonedTlpReceived(header: Uint8Array | undefined, options: { completion?: boolean; advisory?: boolean } = {}): ErrorReport {
    const command = this.space.u16(PCI_CFG.COMMAND);
    let status: number = PCI_STATUS.DETECTED_PARITY_ERROR;
    if ((options.completion ?? false) && (command & PCI_COMMAND.PARITY_ERROR_RESPONSE) !== 0) {
      status |= PCI_STATUS.MASTER_DATA_PARITY_ERROR;
    }
    this.space.hwSet(PCI_CFG.STATUS, 2, status);
    return this.uncorrectable(PCI_ERR_UNC.POISON_TLP, header ?? null, options.advisory ?? false);
  }

  /** A completion matching no outstanding request of this function was received. */
  unexpectedCompletion(header?: Uint8Array): ErrorReport {
    return this.uncorrectable(PCI_ERR_UNC.UNX_COMP, header ?? null, true);
  }

  /** A TLP whose ECRC did not check was received. */
  ecrcError(header?: Uint8Array): ErrorReport {
    return this.uncorrectable(PCI_ERR_UNC.ECRC, header ?? null, false);
  }

  /** A correctable error (one PCI_ERR_COR bit: receiver error, bad TLP, replay timeout…). */
  correctable(bit: number): ErrorReport {
    this.pcie?.setDeviceStatus(PCI_EXP_DEVSTA.CED);
    const masked = this.aer?.recordCorrectable(bit).masked ?? false;
    const send = !masked && (this.pcie?.errorReporting.correctable ?? false);
    return { severity: 'correctable', advisory: false, masked, message: send ? 'ERR_COR' : null };
  }

  /** A completion with UR status came back for a request of this function. */
  receivedUnsupportedRequestCompletion(): void {
    this.space.hwSet(PCI_CFG.STATUS, 2, PCI_STATUS.RECEIVED_MASTER_ABORT);
  }

  /** A completion with CA status came back for a request of this function. */
  receivedCompleterAbortCompletion(): void {
    this.space.hwSet(PCI_CFG.STATUS, 2, PCI_STATUS.RECEIVED_TARGET_ABORT);
  }

  private uncorrectable(bit: number, header: Uint8Array | null, advisoryCandidate: boolean): ErrorReport {
    const fatal = this.aer !== null ? this.aer.isFatal(bit) : (PCI_ERR_UNC_SEVER_DEFAULT & bit) !== 0;
    const advisory = advisoryCandidate && !fatal;
    const isUr = bit === PCI_ERR_UNC.UNSUP;
    const pcie = this.pcie;
    if (pcie !== null) {
      let devsta = advisory ? PCI_EXP_DEVSTA.CED : fatal ? PCI_EXP_DEVSTA.FED : PCI_EXP_DEVSTA.NFED;
      if (isUr) devsta |= PCI_EXP_DEVSTA.URD;
      pcie.setDeviceStatus(devsta);
    }
    const masked = this.aer?.recordUncorrectable(bit, header).masked ?? false;
    const severity = fatal ? 'fatal' : 'non-fatal';
    const enables = pcie?.errorReporting ?? { correctable: false, nonFatal: false, fatal: false, unsupportedRequest: false };
    if (masked || (isUr && !enables.unsupportedRequest)) {
      if (advisory && !masked) this.aer?.recordCorrectable(PCI_ERR_COR.ADV_NFAT);
      return { severity, advisory, masked, message: null };
    }
    if (advisory) {
      const corMasked = this.aer?.recordCorrectable(PCI_ERR_COR.ADV_NFAT).masked ?? false;
      const send = !corMasked && enables.correctable;
      return { severity, advisory, masked, message: send ? 'ERR_COR' : null };
    }
    const serr = (this.space.u16(PCI_CFG.COMMAND) & PCI_COMMAND.SERR_ENABLE) !== 0;
    const enabled = fatal ? enables.fatal : enables.nonFatal;
    if (!enabled && !serr) return { severity, advisory, masked, message: null };
    if (serr) this.space.hwSet(PCI_CFG.STATUS, 2, PCI_STATUS.SIGNALED_SYSTEM_ERROR);
    return { severity, advisory, masked, message: fatal ? 'ERR_FATAL' : 'ERR_NONFATAL' };
  }
}
