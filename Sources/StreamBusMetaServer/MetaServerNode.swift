import Logging
import NIOConcurrencyHelpers
import StreamBusMetaProtocol
import StreamBusMetadata
import StreamBusRaft
import StreamBusRaftHost
import StreamBusTransport

/// The shared state of one metaserver behind its listeners: the state machine, the Raft
/// host once started, and the controller while this node leads.
///
/// The API and HTTP listeners are bound before the Raft host starts (the host announces the
/// bound API address to its peers), so requests that arrive first see no host and are
/// answered NOT_LEADER with an unknown leader.
public final class MetaServerNode: Sendable {
  public let configuration: MetaServerConfiguration
  public let stateMachine: MetadataStateMachine
  public let metrics: MetaServerMetrics
  public let faults: PeerFaults
  /// The pure controller operations (limits included).
  public let controllerLogic = MetadataController()
  let logger: Logger

  private struct State {
    var host: RaftHost?
    /// The running controller and the term it belongs to.
    var controller: ControllerRunner?
    var controllerTerm: Term = 0
    var isShuttingDown = false
  }

  private let state = NIOLockedValueBox(State())

  public init(configuration: MetaServerConfiguration, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
    stateMachine = MetadataStateMachine(
      tailBatchesMax: configuration.metadataTailBatchesMax, logger: logger)
    metrics = MetaServerMetrics()
    faults = PeerFaults()
  }

  public var host: RaftHost? { state.withLockedValue { $0.host } }

  func attach(host: RaftHost) {
    state.withLockedValue { $0.host = host }
  }

  public var isShuttingDown: Bool { state.withLockedValue { $0.isShuttingDown } }

  func beginShutdown() {
    state.withLockedValue { $0.isShuttingDown = true }
  }

  /// The controller, when this node leads and is ready to act as controller.
  public var controller: ControllerRunner? { state.withLockedValue { $0.controller } }

  /// What a non-leader answers: the leader it knows (id and API address), if any.
  public func notLeaderBody() -> NotLeaderBody {
    guard let status = host?.status(), let leader = status.leaderID, leader != configuration.nodeID
    else { return .unknownLeader }
    return NotLeaderBody(
      leaderID: Int32(clamping: leader),
      leaderAddress: status.leaderAddresses?.apiAddress?.description)
  }

  // MARK: - Leadership

  /// Starts or stops the controller to match a new status: a controller runs exactly while
  /// this node is the leader of a term and has applied an entry of that term (so its image
  /// holds everything committed before).
  func leadershipChanged(_ status: RaftHostStatus) {
    let shouldLead = status.isLeader && status.isLeaderReady && !isShuttingDown
    let (stopping, starting) = state.withLockedValue {
      state -> (ControllerRunner?, ControllerRunner?) in
      if shouldLead && state.controller != nil && state.controllerTerm == status.term {
        return (nil, nil)
      }
      let old = state.controller
      state.controller = nil
      guard shouldLead, let host = state.host else { return (old, nil) }
      var settings = ControllerRunner.Settings(
        nodeID: configuration.nodeID, sessionTimeoutMs: configuration.brokerSessionTimeoutMs,
        fenceCheckIntervalMs: configuration.fenceCheckIntervalMs)
      settings.term = status.term
      let runner = ControllerRunner(
        settings: settings,
        controller: controllerLogic, log: host, stateMachine: stateMachine, logger: logger)
      state.controller = runner
      state.controllerTerm = status.term
      return (old, runner)
    }
    if let stopping {
      let leader = status.leaderID
      let address = status.leaderAddresses?.apiAddress?.description
      Task { await stopping.stop(leaderID: leader, leaderAPIAddress: address) }
      logger.notice("controller stopped", metadata: ["term": "\(status.term)"])
    }
    if let starting {
      Task { await starting.start() }
      logger.notice(
        "controller started: this node leads the metadata quorum",
        metadata: ["term": "\(status.term)", "appliedOffset": "\(stateMachine.appliedOffset)"])
    }
  }

  func stopController() {
    let stopping = state.withLockedValue { state -> ControllerRunner? in
      defer { state.controller = nil }
      return state.controller
    }
    if let stopping {
      Task { await stopping.stop(leaderID: nil, leaderAPIAddress: nil) }
    }
  }

  // MARK: - Status for the HTTP endpoints

  public func readiness() -> Readiness {
    guard let host else {
      return Readiness(isReady: false, reason: "Raft host not started")
    }
    let status = host.status()
    if let stopReason = status.stopReason {
      return Readiness(isReady: false, reason: "Raft host stopped: \(stopReason)")
    }
    if isShuttingDown {
      return Readiness(isReady: false, reason: "shutting down")
    }
    if status.leaderID == configuration.nodeID && !status.isLeaderReady {
      return Readiness(
        isReady: false, reason: "elected leader, still applying the entries of earlier terms")
    }
    return Readiness.evaluate(
      nodeID: configuration.nodeID, leaderID: status.leaderID, appliedIndex: status.appliedIndex,
      leaderCommitIndex: status.commitIndex)
  }

  public func refreshMetrics() async {
    if let status = host?.status() {
      metrics.recordRaft(
        term: status.term, commitIndex: status.commitIndex, appliedIndex: status.appliedIndex,
        leaderID: status.leaderID, isLeader: status.isLeader)
    }
    let image = stateMachine.image
    metrics.recordImage(
      brokers: image.brokers.count, fencedBrokers: image.brokers.values.filter(\.fenced).count,
      topics: image.topics.count, partitions: image.partitionCount, offset: image.offset)
    if let controller {
      metrics.recordHeartbeatQueueDepth(await controller.queuedHeartbeats)
    } else {
      metrics.recordHeartbeatQueueDepth(0)
    }
  }

  public func setTransportFaults(_ requested: TransportFaults) {
    faults.heal()
    for peer in requested.dropOutgoingTo { faults.setDropOutbound(to: peer) }
    for peer in requested.dropIncomingFrom { faults.setDropInbound(from: peer) }
    logger.warning("test fault injection changed: \(requested)")
  }
}

/// Adapts the node to the HTTP endpoints.
struct NodeStatusSource: OperationalStatusSource {
  let node: MetaServerNode

  func readiness() async -> Readiness { node.readiness() }
  func refreshMetrics() async { await node.refreshMetrics() }
  func setTransportFaults(_ faults: TransportFaults) async { node.setTransportFaults(faults) }
}
