// The public face of one metaserver's Raft node: start/stop, the async client API, status.
// All state lives in a RaftDriver confined to one dedicated event loop thread; this class
// only forwards calls to that thread and waits for their outcome.

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import StreamBusRaft
import StreamBusTransport

/// Runs one Raft node for real: its SQLite database, its timers, and its TCP links to the
/// other members, with an async API for the application.
///
/// Start with `RaftHost.start`, stop with `shutdown()`. Every method is safe to call from
/// any task or thread.
public final class RaftHost: Sendable {
  public let configuration: RaftHostConfiguration
  public var nodeID: NodeID { configuration.nodeID }
  /// The Raft address announced to peers (the bound port when the listen port was 0).
  public let raftAddress: HostPort
  /// Test-only one-way message loss; see `PeerFaults`.
  public let faults: PeerFaults

  private let group: MultiThreadedEventLoopGroup
  private let eventLoop: any EventLoop
  private let driver: NIOLoopBound<RaftDriver>
  private let server: FrameServer
  private let transport: PeerTransport
  private let board: StatusBoard
  private let sink: DeliverySink
  private let lifecycle = NIOLockedValueBox(Lifecycle())
  private let logger: Logger

  private struct Lifecycle {
    var running = true
    var nextWaiterID: UInt64 = 0
  }

  private init(
    configuration: RaftHostConfiguration, raftAddress: HostPort, faults: PeerFaults,
    group: MultiThreadedEventLoopGroup, eventLoop: any EventLoop, driver: NIOLoopBound<RaftDriver>,
    server: FrameServer, transport: PeerTransport, board: StatusBoard, sink: DeliverySink,
    logger: Logger
  ) {
    self.configuration = configuration
    self.raftAddress = raftAddress
    self.faults = faults
    self.group = group
    self.eventLoop = eventLoop
    self.driver = driver
    self.server = server
    self.transport = transport
    self.board = board
    self.sink = sink
    self.logger = logger
  }

  /// Opens (or creates) the database, restores the state machine from its snapshot, starts
  /// listening for peers and starts the Raft clock.
  ///
  /// Throws `RaftHostError` (`invalidConfiguration`), `SQLiteRaftStorageError` (the
  /// database cannot be opened: locked, foreign, corrupt), `TransportError` (cannot
  /// listen), or what the state machine's `restore` throws.
  public static func start(
    configuration: RaftHostConfiguration, stateMachine: any RaftStateMachine, logger: Logger,
    faults: PeerFaults = PeerFaults()
  ) async throws -> RaftHost {
    try configuration.validate()
    var logger = logger
    logger[metadataKey: "raft-node"] = "\(configuration.nodeID)"
    let hostLogger = logger
    let settings = PeerTransportSettings(configuration)
    let sink = DeliverySink()
    var serverConfiguration = FrameServerConfiguration(listen: configuration.raftListen)
    serverConfiguration.shutdownGracePeriodMs = 200
    serverConfiguration.inflightRequestsMax = 256
    let server = try await FrameServer.bind(
      configuration: serverConfiguration,
      handler: PeerFrameHandler(
        settings: settings, faults: faults, logger: logger, limiter: LogLimiter(),
        deliver: { from, sender, messages in sink.deliver(from, sender, messages) }),
      logger: logger)
    let raftAddress =
      configuration.advertisedRaftAddress
      ?? configuration.initialCluster[configuration.nodeID].map(\.raftAddress)
      .flatMap { $0.port == 0 ? nil : $0 }
      ?? server.localAddress
    let selfAddresses = PeerAddresses(
      raftAddress: raftAddress, apiAddress: configuration.apiAddress)
    let transport = PeerTransport(
      settings: settings, selfAddresses: selfAddresses, faults: faults, logger: logger)
    let board = StatusBoard(RaftHostStatus(nodeID: configuration.nodeID))
    // A thread of its own: the driver blocks on fsync, which must not stall network I/O.
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let eventLoop = group.next()
    let driver: NIOLoopBound<RaftDriver>
    do {
      driver = try await eventLoop.submit {
        let driver = try RaftDriver(
          configuration: configuration, eventLoop: eventLoop, stateMachine: stateMachine,
          transport: transport, board: board, selfAddresses: selfAddresses, logger: hostLogger)
        driver.start()
        return NIOLoopBound(driver, eventLoop: eventLoop)
      }.get()
    } catch {
      await server.shutdownGracefully()
      await transport.close()
      try? await group.shutdownGracefully()
      throw error
    }
    let host = RaftHost(
      configuration: configuration, raftAddress: raftAddress, faults: faults, group: group,
      eventLoop: eventLoop, driver: driver, server: server, transport: transport, board: board,
      sink: sink, logger: logger)
    sink.connect(host)
    return host
  }

  // MARK: - Client API

  /// Appends `data` to the log; returns its index once it is committed and applied here.
  ///
  /// Throws at once `notLeader` (with the leader's id and addresses when known) on a
  /// follower and `proposalDropped` during a leadership transfer; `proposalOverwritten` if
  /// a new leader replaced the entry; `timedOut` after `proposalTimeoutMs` (the entry may
  /// still commit later).
  @discardableResult
  public func propose(_ data: [UInt8]) async throws -> LogIndex {
    try await propose(data, expectedTerm: nil)
  }

  /// `propose`, refused (`proposalDropped`) unless this node leads in exactly
  /// `expectedTerm` (when given): for callers whose entry was computed from state they
  /// observed as leader of that term (a controller must not act on a decision of an
  /// earlier leadership).
  @discardableResult
  public func propose(_ data: [UInt8], expectedTerm: Term?) async throws -> LogIndex {
    try await wait(timeoutMs: configuration.proposalTimeoutMs, what: "proposal") {
      try $0.startProposal(data, expectedTerm: expectedTerm, waiter: $1)
    }
  }

  /// Returns once this node's state machine reflects every write committed before the
  /// call (ReadIndex: the leader confirms it still leads with a heartbeat round). Works on
  /// followers too (the request goes to the leader). Returns the read index.
  @discardableResult
  public func linearizableRead() async throws -> LogIndex {
    try await wait(timeoutMs: configuration.readTimeoutMs, what: "linearizable read") {
      try $0.startRead(waiter: $1)
    }
  }

  /// Leader only: adds `id` as a learner reachable at `addresses`; returns once applied.
  public func addLearner(_ id: NodeID, addresses: PeerAddresses) async throws {
    _ = try await wait(timeoutMs: configuration.proposalTimeoutMs, what: "add learner \(id)") {
      try $0.startAddLearner(id, addresses: addresses, waiter: $1)
    }
  }

  /// Leader only: makes learner `id` a voter once it is within `promotionLagEntriesMax`.
  public func promote(_ id: NodeID) async throws {
    _ = try await wait(timeoutMs: configuration.proposalTimeoutMs, what: "promote \(id)") {
      try $0.startPromote(id, waiter: $1)
    }
  }

  /// Leader only: removes voter or learner `id`; returns once applied.
  public func remove(_ id: NodeID) async throws {
    _ = try await wait(timeoutMs: configuration.proposalTimeoutMs, what: "remove \(id)") {
      try $0.startRemove(id, waiter: $1)
    }
  }

  /// Leader only: hands leadership to `target` (nil: the most caught-up other voter) and
  /// returns the new leader's id once this node hears of it.
  @discardableResult
  public func transferLeadership(to target: NodeID?) async throws -> NodeID {
    try await wait(
      timeoutMs: configuration.effectiveTransferTimeoutMs, what: "leadership transfer"
    ) {
      try $0.startTransfer(to: target, waiter: $1)
    }
  }

  /// Committed application entries after `index` from the local log (any member may
  /// serve it), or `.compacted` when they are only in the snapshot.
  public func readCommitted(after index: LogIndex, maxBytes: Int) async throws -> CommittedRead {
    try await onLoopResult { try $0.readCommitted(after: index, maxBytes: maxBytes) }
  }

  /// The latest status (refreshed after every Ready and tick).
  public func status() -> RaftHostStatus { board.current }

  /// API address of the leader, if a leader is known and announced one.
  public var leaderAPIAddress: HostPort? { board.current.leaderAddresses?.apiAddress }

  /// The current status, then each one where role, term, leader, leader readiness,
  /// membership or the stop reason changed. Ends when the host shuts down.
  public func statusChanges() -> AsyncStream<RaftHostStatus> { board.subscribe() }

  /// Stops the node: pending calls fail with `shutDown`, the database is closed, links and
  /// the listener are closed. `graceful: false` drops the network first, as a crash would,
  /// so peers see the node vanish mid-stream (tests use it as a stand-in for kill -9).
  public func shutdown(graceful: Bool = true) async {
    let first = lifecycle.withLockedValue { state -> Bool in
      defer { state.running = false }
      return state.running
    }
    guard first else { return }
    sink.disconnect()
    if !graceful {
      await transport.close()
    }
    let driver = self.driver
    // Everything submitted while running was enqueued before this, so it runs first.
    try? await eventLoop.submit { driver.value.close() }.get()
    await server.shutdownGracefully()
    await transport.close()
    board.finish()
    try? await group.shutdownGracefully()
    logger.info("raft host shut down", metadata: ["graceful": "\(graceful)"])
  }

  // MARK: - Plumbing

  /// Runs `body` on the driver loop unless the host is shut down. The check and the
  /// enqueue happen under one lock, so nothing reaches the loop after its final task.
  fileprivate func onLoop(_ body: @escaping @Sendable (RaftDriver) -> Void) -> Bool {
    let driver = self.driver
    let eventLoop = self.eventLoop
    return lifecycle.withLockedValue { state in
      guard state.running else { return false }
      eventLoop.execute { body(driver.value) }
      return true
    }
  }

  private func onLoopResult<Value: Sendable>(
    _ body: @escaping @Sendable (RaftDriver) throws -> Value
  ) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
      let scheduled = onLoop { driver in
        continuation.resume(with: Result { try body(driver) })
      }
      if !scheduled {
        continuation.resume(throwing: RaftHostError(.shutDown, "raft host is shut down"))
      }
    }
  }

  /// Registers a waiter on the loop, runs `start`, and waits for the waiter's outcome.
  private func wait(
    timeoutMs: Int64, what: String,
    _ start: @escaping @Sendable (RaftDriver, UInt64) throws -> Void
  ) async throws -> UInt64 {
    let waiter = lifecycle.withLockedValue { state in
      state.nextWaiterID += 1
      return state.nextWaiterID
    }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: WaitContinuation) in
        let scheduled = onLoop { driver in
          guard driver.register(waiter, continuation, timeoutMs: timeoutMs, what: what) else {
            return
          }
          do {
            try start(driver, waiter)
          } catch {
            driver.finish(waiter, .failure(driver.hostError(error)))
          }
        }
        if !scheduled {
          continuation.resume(throwing: RaftHostError(.shutDown, "raft host is shut down"))
        }
      }
    } onCancel: {
      _ = onLoop { $0.cancel(waiter) }
    }
  }
}

/// Where the peer server hands inbound messages; connected once the host exists.
///
/// It holds the host itself rather than a closure. With the closure kept in a generic lock
/// box, perf showed every delivery running through a chain of reabstraction thunks that grew
/// with the number of deliveries (Swift 6.3.1, release): two thirds of a metaserver leader's
/// CPU after a few thousand writes, and create-topic latency growing with uptime.
final class DeliverySink: Sendable {
  private let target = NIOLockedValueBox<RaftHost?>(nil)

  func connect(_ host: RaftHost) { target.withLockedValue { $0 = host } }
  /// Breaks the host ↔ sink reference cycle at shutdown.
  func disconnect() { target.withLockedValue { $0 = nil } }

  func deliver(_ from: NodeID, _ sender: PeerAddresses, _ messages: [Message]) {
    guard let host = target.withLockedValue({ $0 }) else { return }
    _ = host.onLoop { $0.receive(from: from, sender: sender, messages: messages) }
  }
}
