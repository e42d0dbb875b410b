export { EventTrace, TRACE as STRESS_TRACE, formatTraceEvent, formatTraceEvents, traceKindName, type TraceEvent } from './trace.js';
export { StressFabric, type StressFabricOptions } from './fabric.js';
export {
  DEFAULT_STRESS_CONFIG,
  DEFAULT_STRESS_TUNING,
  STRESS_LAYERS,
  StressRun,
  checkStressConfig,
  stressPolicy,
  type StressConfig,
  type StressFailure,
  type StressFailureKind,
  type StressLimits,
  type StressResult,
  type StressTuning,
} from './stress-run.js';
export {
  NOTIFICATION_SITES,
  SITES_NEEDED_BY_STRESS,
  SITES_NEEDED_WITH_NOTIFICATIONS,
  SITE_NOT_NEEDED,
  cellNote,
  matrixCells,
  runCell,
  runMatrix,
  shellLine,
  stressArgv,
  type MatrixBarriers,
  type MatrixCell,
  type MatrixCellResult,
  type MatrixOptions,
} from './matrix.js';
export { matrixReportHtml, type MatrixReportInfo } from './report.js';
