import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import StreamBusRaft
import StreamBusRaftHost
import StreamBusTransport

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// A failure starting or running a metaserver (not a request error).
public struct MetaServerError: Error, Sendable, CustomStringConvertible {
  public let message: String

  public init(_ message: String) {
    self.message = message
  }

  public var description: String { message }
}

/// One metaserver process: Raft host, metadata state machine, controller, API and HTTP.
///
/// `start` binds the API and HTTP listeners, opens the Raft database and starts the node;
/// `run` serves until a graceful shutdown (SIGTERM/SIGINT through a `ServiceGroup`, or
/// `shutdownGracefully()`), then hands leadership to another voter if this node leads,
/// stops the controller, drains the listeners and closes the Raft host.
public final class MetaServer: Service, Sendable {
  public let configuration: MetaServerConfiguration
  public let node: MetaServerNode
  public let raftAddress: HostPort
  public let apiAddress: HostPort
  public let httpAddress: HostPort
  public var metrics: MetaServerMetrics { node.metrics }
  public var host: RaftHost {
    guard let host = node.host else { preconditionFailure("the host is attached in start") }
    return host
  }

  private let apiServer: FrameServer
  private let http: HTTPEndpointServer
  private let statusWatcher: NIOLockedValueBox<Task<Void, Never>?>
  private let shutdownSignal: AsyncStream<Void>
  private let shutdownTrigger: AsyncStream<Void>.Continuation
  private let fatalError = NIOLockedValueBox<String?>(nil)
  private let logger: Logger

  private init(
    configuration: MetaServerConfiguration, node: MetaServerNode, raftAddress: HostPort,
    apiServer: FrameServer, http: HTTPEndpointServer, logger: Logger
  ) {
    self.configuration = configuration
    self.node = node
    self.raftAddress = raftAddress
    self.apiServer = apiServer
    self.apiAddress = apiServer.localAddress
    self.http = http
    self.httpAddress = http.localAddress
    self.logger = logger
    statusWatcher = NIOLockedValueBox(nil)
    (shutdownSignal, shutdownTrigger) = AsyncStream.makeStream(of: Void.self)
  }

  /// The Raft host settings derived from the metaserver's.
  static func raftConfiguration(
    _ configuration: MetaServerConfiguration, apiAddress: HostPort
  ) -> RaftHostConfiguration {
    var raft = RaftHostConfiguration(
      nodeID: configuration.nodeID, clusterID: configuration.clusterID,
      databasePath: URL(fileURLWithPath: configuration.dataDirectory)
        .appendingPathComponent("raft.sqlite").path,
      raftListen: configuration.raftListen)
    raft.apiAddress = apiAddress
    if let own = configuration.initialCluster[configuration.nodeID] {
      raft.advertisedRaftAddress = own
    } else if configuration.raftListen.port != 0 {
      raft.advertisedRaftAddress = HostPort(
        host: MetaServerConfiguration.reachableHost(configuration.raftListen.host),
        port: configuration.raftListen.port)
    }
    raft.initialCluster = configuration.initialCluster.mapValues {
      PeerAddresses(raftAddress: $0)
    }
    raft.initialCluster[configuration.nodeID]?.apiAddress = apiAddress
    raft.join = configuration.initialCluster.isEmpty
    raft.tickIntervalMs = configuration.tickIntervalMs
    raft.heartbeatTicks = max(
      1, Int(configuration.raftHeartbeatIntervalMs / configuration.tickIntervalMs))
    raft.electionTimeoutTicks = max(
      raft.heartbeatTicks + 1,
      Int(configuration.raftElectionTimeoutMs / configuration.tickIntervalMs))
    raft.snapshotThresholdEntries = UInt64(configuration.snapshotThresholdEntries)
    raft.snapshotTrailingEntries = min(
      raft.snapshotTrailingEntries, UInt64(max(1, configuration.snapshotThresholdEntries / 2)))
    raft.proposalTimeoutMs = configuration.requestTimeoutMs
    raft.readTimeoutMs = configuration.requestTimeoutMs
    return raft
  }

  public static func start(configuration: MetaServerConfiguration, logger: Logger) async throws
    -> MetaServer
  {
    if let readyFile = configuration.readyFile {
      // A file left by a crashed run would tell waiting scripts stale addresses.
      unlink(readyFile)
    }
    do {
      try FileManager.default.createDirectory(
        atPath: configuration.dataDirectory, withIntermediateDirectories: true)
    } catch {
      throw MetaServerError("cannot create data directory \(configuration.dataDirectory): \(error)")
    }
    let node = MetaServerNode(configuration: configuration, logger: logger)
    var apiConfiguration = FrameServerConfiguration(listen: configuration.apiListen)
    apiConfiguration.frameBytesMax = configuration.frameBytesMax
    apiConfiguration.shutdownGracePeriodMs = configuration.shutdownGracePeriodMs
    let apiServer = try await FrameServer.bind(
      configuration: apiConfiguration, handler: MetaRequestHandler(node: node), logger: logger)
    let http: HTTPEndpointServer
    do {
      http = try await HTTPEndpointServer.bind(
        listen: configuration.httpListen,
        handler: OperationalEndpoints(
          source: NodeStatusSource(node: node), metrics: node.metrics,
          enableTestFaults: configuration.enableTestFaults),
        logger: logger)
    } catch {
      await apiServer.shutdownGracefully()
      throw error
    }
    let advertisedAPI = HostPort(
      host: configuration.effectiveAdvertisedHost, port: apiServer.localAddress.port)
    let host: RaftHost
    do {
      host = try await RaftHost.start(
        configuration: raftConfiguration(configuration, apiAddress: advertisedAPI),
        stateMachine: node.stateMachine, logger: logger, faults: node.faults)
    } catch {
      await apiServer.shutdownGracefully()
      await http.shutdown()
      throw error
    }
    node.attach(host: host)
    let server = MetaServer(
      configuration: configuration, node: node, raftAddress: host.raftAddress,
      apiServer: apiServer, http: http, logger: logger)
    server.startStatusWatcher()
    if configuration.join.isEmpty == false {
      logger.notice(
        "started without bootstrapping; waiting to be added as a learner",
        metadata: ["join": "\(configuration.join.map(\.description).joined(separator: ","))"])
    }
    if let readyFile = configuration.readyFile {
      do {
        try ReadyFile.write(
          path: readyFile, raft: server.raftAddress, api: server.apiAddress,
          http: server.httpAddress)
      } catch {
        await server.stop(transferLeadership: false)
        throw error
      }
    }
    return server
  }

  /// Follows the Raft host's status: starts and stops the controller with leadership,
  /// counts leader changes, and ends `run` when the host stopped on a fatal error.
  private func startStatusWatcher() {
    let node = node
    let changes = host.statusChanges()
    let logger = logger
    let fatalError = fatalError
    let trigger = shutdownTrigger
    let task = Task {
      for await status in changes {
        node.leadershipChanged(status)
        node.metrics.recordRaft(
          term: status.term, commitIndex: status.commitIndex, appliedIndex: status.appliedIndex,
          leaderID: status.leaderID, isLeader: status.isLeader)
        if let reason = status.stopReason {
          logger.critical("the Raft host stopped: \(reason)")
          fatalError.withLockedValue { $0 = reason }
          trigger.yield()
          return
        }
      }
    }
    statusWatcher.withLockedValue { $0 = task }
  }

  /// Serves until a graceful shutdown, then stops (see the type's documentation). Throws
  /// when the Raft host stopped on a storage or state-machine failure.
  public func run() async throws {
    let signal = shutdownSignal
    let trigger = shutdownTrigger
    await withGracefulShutdownHandler {
      await withTaskCancellationHandler {
        for await _ in signal { break }
      } onCancel: {
        trigger.yield()
      }
    } onGracefulShutdown: {
      trigger.yield()
    }
    let fatal = fatalError.withLockedValue { $0 }
    await stop(transferLeadership: fatal == nil)
    if let fatal {
      throw MetaServerError("the Raft host stopped: \(fatal)")
    }
  }

  /// Asks `run` to stop (as SIGTERM would).
  public func shutdownGracefully() {
    shutdownTrigger.yield()
  }

  private func stop(transferLeadership: Bool) async {
    node.beginShutdown()
    if transferLeadership, node.host?.status().isLeader == true {
      await handOffLeadership()
    }
    node.stopController()
    node.stateMachine.close()
    await apiServer.shutdownGracefully()
    await http.shutdown()
    statusWatcher.withLockedValue { $0?.cancel() }
    await node.host?.shutdown()
    if let readyFile = configuration.readyFile {
      unlink(readyFile)
    }
    logger.info("metaserver stopped")
  }

  /// A leader that exits makes the others wait out an election timeout before writes
  /// resume; handing leadership to the most caught-up voter first avoids that gap.
  private func handOffLeadership() async {
    guard let host = node.host else { return }
    let voters = host.status().voters.map(\.id).filter { $0 != configuration.nodeID }
    guard !voters.isEmpty else { return }
    logger.notice("shutting down as leader: transferring leadership first")
    do {
      let newLeader = try await host.transferLeadership(to: nil)
      logger.notice("leadership transferred", metadata: ["newLeader": "\(newLeader)"])
    } catch {
      logger.warning("leadership transfer failed; stopping anyway: \(error)")
    }
  }
}
