/**
 * The NVMe over Fabrics command layer of the target: subsystems, their
 * per-host controllers, the discovery service. Transport independent: a
 * transport (NVMe/TCP) decodes capsules and calls in; see subsystem.ts.
 */
export { Subsystem, checkNqn, type SubsystemOptions, type PortAddress } from './subsystem.js';
export { DiscoveryService, DiscoveryController, type DiscoveryOptions } from './discovery.js';
export { FabricsController, type LocalAdmin, type FabricsControllerOptions } from './fabrics-controller.js';
export { ControllerCore, TARGET_VERSION, TARGET_CAP_TO, TARGET_AERL, type ControllerIdentity } from './controller-core.js';
export { connectTo, parseConnect, type ConnectRequest, type ConnectResult, type ConnectTarget, type FabricsQueueInfo } from './connect.js';
export { encodeResponse, capsuleCid, readSgl1, type Sgl, type FabricsResponse, type QueueLink } from './capsule.js';
