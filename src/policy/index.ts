/**
 * The dialog policy: rules over each call's emotion stream (config.ts), the pure engine that decides (engine.ts),
 * and the runtime that carries decisions out (runtime.ts). The live server and offline replay run the same engine.
 */
export { parsePolicy, loadPolicyFile, NEGATIVE_LABELS, type PolicyConfig, type PolicyRule, type RuleAction, type RuleConditions } from './config.js';
export { PolicyEngine, type PolicyEngineOptions } from './engine.js';
export { PolicyRuntime, type ActionHandler, type PolicyRuntimeHost, type CallController, type ControlResult, type EscalationTarget } from './runtime.js';
export { DEFAULT_POLICY } from './default.js';
export { angerThreshold, SHIPPED_ANGER_THRESHOLD, type AngerThreshold } from './anger.js';

