import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import ServiceLifecycle
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusMetadata
import StreamBusStorage
import StreamBusTransport

/// A broker of a cluster (`databroker --metaservers ...`).
///
/// `start` locks the data directory and binds the listener. `run` then registers with the
/// metaservers (`BrokerSession`, heartbeats from then on), follows the metadata log into a
/// local image (`MetadataFollower`), reconciles the hosted replicas to it
/// (`ClusterReconciler`: open/create, leadership, delete) with one `ReplicaFetcher` per
/// leader it follows, and sends ISR changes (`IsrChangeSender`). The ready file is written
/// once the broker listens, is registered and unfenced.
///
/// On SIGTERM/SIGINT (or `shutdownGracefully()`) it shuts down in a controlled way: its
/// heartbeats ask the controller to move leadership away and it keeps serving until the
/// controller says it is done (bounded by `controlledShutdownTimeoutMs`); then it stops
/// like the standalone broker: drains connections, flushes and closes every log.
public final class ClusterBroker: Service, Sendable {
  public let localAddress: HostPort
  public let configuration: BrokerConfiguration
  public let replicaManager: ReplicaManager
  public let metadataView: ClusterMetadataView
  private let settings: ClusterSettings
  private let threadPool: NIOThreadPool
  private let router: RequestRouter
  private let server: FrameServer
  private let directoryLock: DataDirectoryLock
  private let metaClient: MetaClient
  /// The metadata long-poll's own client: answers on a connection come back in request
  /// order, so a heartbeat queued behind a 500 ms long-poll would wait for it.
  private let metadataClient: MetaClient
  private let session: BrokerSession
  private let follower: MetadataFollower
  private let reconciler: ClusterReconciler
  private let fetchers: ReplicaFetcherManager
  private let isrSender: IsrChangeSender
  let producerIds: MetaProducerIdSource
  private let onReady: @Sendable (HostPort) -> Void
  private let shutdownRequest = ShutdownRequest()
  /// True while this broker has asked to give up its leaderships because its disk is full.
  private let isStandingDownForFullDisk = NIOLockedValueBox(false)
  private let logger: Logger

  private init(
    configuration: BrokerConfiguration, settings: ClusterSettings,
    replicaManager: ReplicaManager, threadPool: NIOThreadPool, router: RequestRouter,
    server: FrameServer, directoryLock: DataDirectoryLock, metaClient: MetaClient,
    metadataClient: MetaClient,
    session: BrokerSession, view: ClusterMetadataView, follower: MetadataFollower,
    reconciler: ClusterReconciler, fetchers: ReplicaFetcherManager,
    isrSender: IsrChangeSender, producerIds: MetaProducerIdSource,
    onReady: @escaping @Sendable (HostPort) -> Void, logger: Logger
  ) {
    self.localAddress = server.localAddress
    self.configuration = configuration
    self.settings = settings
    self.replicaManager = replicaManager
    self.threadPool = threadPool
    self.router = router
    self.server = server
    self.directoryLock = directoryLock
    self.metaClient = metaClient
    self.metadataClient = metadataClient
    self.session = session
    self.metadataView = view
    self.follower = follower
    self.reconciler = reconciler
    self.fetchers = fetchers
    self.isrSender = isrSender
    self.producerIds = producerIds
    self.onReady = onReady
    self.logger = logger
  }

  /// Locks the data directory and binds the listener; registration happens in `run`.
  /// `onReady` is called with the client address once the broker is registered and
  /// unfenced (when the ready file is written).
  public static func start(
    configuration: BrokerConfiguration, logger: Logger,
    onReady: @escaping @Sendable (HostPort) -> Void = { _ in }
  ) async throws -> ClusterBroker {
    guard let settings = configuration.cluster else {
      throw BrokerError("ClusterBroker needs cluster settings (--metaservers)")
    }
    var logger = logger
    logger[metadataKey: "broker"] = "\(settings.brokerID)"
    let (directoryLock, threadPool) = try prepareDataDirectory(configuration)
    do {
      let directoryID = try DataDirectoryIdentity.loadOrCreate(
        directory: configuration.dataDirectory, fileSystem: configuration.fileSystem)
      let replicaManager = try await ReplicaManager.openForCluster(
        configuration: configuration, threadPool: threadPool, logger: logger)
      var clientConfiguration = MetaClientConfiguration(
        bootstrap: settings.metaservers, requestTimeoutMs: 10_000)
      clientConfiguration.attemptTimeoutMs = max(settings.brokerHeartbeatIntervalMs * 2, 500)
      clientConfiguration.connectTimeoutMs = 1_000
      clientConfiguration.clientID = "databroker-\(settings.brokerID)"
      var clientLogger = logger
      clientLogger.logLevel = max(logger.logLevel, .warning)
      let metaClient = MetaClient(configuration: clientConfiguration, logger: clientLogger)
      clientConfiguration.clientID = "databroker-\(settings.brokerID)-metadata"
      let metadataClient = MetaClient(
        configuration: clientConfiguration, logger: clientLogger)
      // The session reads the follower's offset, the follower feeds the reconciler, which
      // drives the fetchers that need the session's epoch: built in that order through
      // a box the closures read once everything exists.
      let sessionBox = NIOLockedValueBox<BrokerSession?>(nil)
      let brokerEpoch: @Sendable () async -> Int64 = {
        guard let session = sessionBox.withLockedValue({ $0 }) else { return -1 }
        return await session.brokerEpoch
      }
      let view = ClusterMetadataView(
        brokerID: settings.brokerID, clusterID: configuration.clusterId, client: metaClient,
        logger: logger)
      let producerIds = MetaProducerIdSource(
        brokerID: settings.brokerID, client: metaClient, brokerEpoch: brokerEpoch,
        logger: logger)
      let router = RequestRouter(
        replicaManager: replicaManager, configuration: configuration,
        producerIdSource: producerIds, logger: logger, cluster: view)
      let server: FrameServer
      do {
        server = try await bindServer(configuration: configuration, router: router, logger: logger)
      } catch {
        await metaClient.close()
        await metadataClient.close()
        throw error
      }
      router.setAdvertisedPort(server.localAddress.port)

      let fetchers = ReplicaFetcherManager(
        context: ReplicaFetcherContext(
          brokerID: settings.brokerID, settings: settings, replicaManager: replicaManager,
          view: view, brokerEpoch: brokerEpoch, logger: logger))
      let reconciler = ClusterReconciler(
        brokerID: settings.brokerID, replicaManager: replicaManager,
        configuration: configuration, fetchers: fetchers, logger: logger)
      let follower = MetadataFollower(
        client: metadataClient,
        onImage: { image in
          view.update(image)
          await reconciler.submit(image)
        }, logger: logger)
      let session = BrokerSession(
        client: metaClient,
        registration: BrokerSession.Registration(
          brokerID: settings.brokerID, incarnationID: Int64.random(in: 1...Int64.max),
          endpoints: [
            MetaEndpoint(
              name: ClusterMetadataView.clientEndpointName,
              host: configuration.effectiveAdvertisedHost,
              port: Int32(server.localAddress.port))
          ],
          rack: settings.rack,
          capacity: MetaBrokerCapacity(
            diskBytes: diskCapacityBytes(configuration.dataDirectory)),
          directoryID: directoryID),
        heartbeatIntervalMs: settings.brokerHeartbeatIntervalMs,
        appliedOffset: { follower.appliedOffset }, logger: logger)
      sessionBox.withLockedValue { $0 = session }
      let isrSender = IsrChangeSender(
        brokerID: settings.brokerID, client: metaClient, brokerEpoch: brokerEpoch,
        replicaLagTimeMaxMs: settings.replicaLagTimeMaxMs, logger: logger)
      return ClusterBroker(
        configuration: configuration, settings: settings, replicaManager: replicaManager,
        threadPool: threadPool, router: router, server: server, directoryLock: directoryLock,
        metaClient: metaClient, metadataClient: metadataClient, session: session, view: view,
        follower: follower,
        reconciler: reconciler, fetchers: fetchers, isrSender: isrSender,
        producerIds: producerIds, onReady: onReady, logger: logger)
    } catch {
      try? await threadPool.shutdownGracefully()
      directoryLock.release()
      throw error
    }
  }

  static func bindServer(
    configuration: BrokerConfiguration, router: RequestRouter, logger: Logger
  ) async throws -> FrameServer {
    var serverConfiguration = FrameServerConfiguration(listen: configuration.listen)
    serverConfiguration.inflightRequestsMax = configuration.inflightRequestsMax
    serverConfiguration.frameBytesMax = configuration.frameBytesMax
    serverConfiguration.shutdownGracePeriodMs = configuration.shutdownGracePeriodMs
    return try await FrameServer.bind(
      configuration: serverConfiguration, handler: router, logger: logger)
  }

  /// Size of the file system holding the data directory (registration capacity; 0 when
  /// unknown).
  static func diskCapacityBytes(_ path: String) -> Int64 {
    var stats = statvfs()
    guard statvfs(path, &stats) == 0 else { return 0 }
    return Int64(clamping: UInt64(stats.f_blocks) &* UInt64(stats.f_frsize))
  }

  public func run() async throws {
    // The listener must outlive the graceful-shutdown signal: during a controlled shutdown
    // the broker keeps serving (followers catch up, clients learn the new leaders).
    let server = server
    let serverTask = Task.detached { try? await server.run() }
    let follower = follower
    let followerTask = Task { await follower.run() }
    let lifecycle = Task { await self.joinCluster() }
    let maintenance = Task { await self.runMaintenance() }
    let shutdownRequest = shutdownRequest
    await withGracefulShutdownHandler {
      await shutdownRequest.wait()
    } onGracefulShutdown: {
      shutdownRequest.fire()
    }
    lifecycle.cancel()
    await lifecycle.value
    await controlledShutdown()

    logger.info("stopping: fetchers, metadata, listener")
    await session.stop()
    await fetchers.stopAll()
    await reconciler.stop()
    followerTask.cancel()
    await followerTask.value
    maintenance.cancel()
    await maintenance.value
    await isrSender.drain()
    await router.beginShutdown()
    await server.shutdownGracefully()
    await serverTask.value
    await replicaManager.closeAll()
    await metaClient.close()
    await metadataClient.close()
    try? await threadPool.shutdownGracefully()
    if let readyFile = configuration.readyFile {
      unlink(readyFile)
    }
    directoryLock.release()
    logger.info("broker stopped; all partition logs flushed and closed")
  }

  /// Starts the shutdown `run` performs on SIGTERM.
  public func shutdownGracefully() {
    shutdownRequest.fire()
  }

  /// Registers (retrying until the metaservers answer), waits for the image to catch up
  /// and for the controller to unfence this broker, then writes the ready file.
  private func joinCluster() async {
    var backoffMs: Int64 = 100
    while !Task.isCancelled {
      do {
        try await session.start()
        break
      } catch {
        logger.warning(
          "registration with the metaservers failed; retrying", metadata: ["error": "\(error)"])
        try? await Task.sleep(for: .milliseconds(backoffMs))
        backoffMs = min(backoffMs * 2, 2_000)
      }
    }
    guard !Task.isCancelled else { return }
    let brokerEpoch = await session.brokerEpoch
    logger.info(
      "registered with the metaservers",
      metadata: ["brokerEpoch": "\(brokerEpoch)", "address": "\(localAddress)"])
    await follower.waitUntilCaughtUp()
    guard !Task.isCancelled else { return }
    while !Task.isCancelled {
      if !(await session.isFenced) { break }
      try? await Task.sleep(for: .milliseconds(20))
    }
    while !Task.isCancelled {
      if await reconciler.removeStrayDirectories(brokerEpoch: session.brokerEpoch) { break }
      try? await Task.sleep(for: .milliseconds(20))
    }
    guard !Task.isCancelled else { return }
    let advertised = HostPort(
      host: configuration.effectiveAdvertisedHost, port: localAddress.port)
    logger.info("unfenced; serving as a cluster member", metadata: ["address": "\(advertised)"])
    if let readyFile = configuration.readyFile {
      do {
        try StandaloneBroker.writeReadyFile(readyFile, address: advertised)
      } catch {
        logger.error("cannot write the ready file: \(error)")
      }
    }
    onReady(advertised)
  }

  /// Heartbeats with wantShutdown until the controller moved every leadership away, at most
  /// `controlledShutdownTimeoutMs`. Skipped when the broker is not an active member.
  private func controlledShutdown() async {
    guard await session.brokerEpoch >= 0, !(await session.isFenced) else { return }
    logger.info("controlled shutdown: asking the controller to move leadership away")
    await session.requestControlledShutdown()
    let deadline = ContinuousClock.now + .milliseconds(settings.controlledShutdownTimeoutMs)
    await session.heartbeatOnce()
    while !(await session.shouldShutdown) {
      guard ContinuousClock.now < deadline else {
        logger.warning(
          "controlled shutdown timed out after \(settings.controlledShutdownTimeoutMs) ms; stopping anyway"
        )
        return
      }
      try? await Task.sleep(for: .milliseconds(50))
    }
    logger.info("controlled shutdown complete: this broker leads nothing")
  }

  /// The standalone maintenance (acks=all timeouts, flushes, retention) plus, each tick,
  /// the leader session check and the ISR changes of led partitions.
  private func runMaintenance() async {
    let session = session
    let reconciler = reconciler
    let isrSender = isrSender
    let sessionTimeout = Duration.milliseconds(settings.brokerSessionTimeoutMs)
    await StandaloneBroker.runMaintenance(
      replicaManager: replicaManager, configuration: configuration
    ) { replicas, nowMs in
      await self.reactToDiskSpace()
      let lastHeartbeat = await session.lastSuccessfulHeartbeat
      let valid = lastHeartbeat.map { ContinuousClock.now - $0 < sessionTimeout } ?? true
      await reconciler.setSessionValid(valid)
      if valid {
        await isrSender.tick(replicas: replicas, nowMs: nowMs)
      }
    }
  }
}

extension ClusterBroker {
  /// A full disk: the broker asks the controller to move its leaderships away and take it
  /// out of every ISR (the controlled-shutdown request of its heartbeats), keeps running as
  /// a follower that does not fetch, and once the disk monitor's probe finds space again
  /// registers anew (the way out of controlled shutdown), so the controller unfences it
  /// and its replicas catch up and rejoin the ISRs. Nothing acknowledged is at risk: only
  /// ISR members are elected, and they hold every committed record.
  fileprivate func reactToDiskSpace() async {
    let isFull = replicaManager.diskSpace.isFull
    let standingDown = isStandingDownForFullDisk.withLockedValue { $0 }
    if isFull && !standingDown {
      guard await session.brokerEpoch >= 0 else { return }
      isStandingDownForFullDisk.withLockedValue { $0 = true }
      logger.error(
        "data disk is full: asking the controller to move this broker's leaderships away and take it out of the ISRs; it rejoins once \(replicaManager.diskSpace.probeBytes) bytes can be written again",
        metadata: ["reason": "\(replicaManager.diskSpace.fullReason ?? "")"])
      await session.requestControlledShutdown()
      await session.heartbeatOnce()
    } else if !isFull && standingDown {
      // A SIGTERM meanwhile keeps the controlled shutdown it asked for.
      guard !shutdownRequest.isFired else { return }
      do {
        try await session.rejoin()
        isStandingDownForFullDisk.withLockedValue { $0 = false }
        let brokerEpoch = await session.brokerEpoch
        logger.notice(
          "data disk has space again: registered anew to take leaderships and rejoin the ISRs",
          metadata: ["brokerEpoch": "\(brokerEpoch)"])
      } catch {
        logger.warning(
          "registering again after the disk had space failed; retrying",
          metadata: ["error": "\(error)"])
      }
    }
  }
}

/// A one-shot signal that `run` waits for: graceful shutdown or `shutdownGracefully()`.
final class ShutdownRequest: Sendable {
  private struct State {
    var fired = false
    var waiters: [CheckedContinuation<Void, Never>] = []
  }

  private let state = NIOLockedValueBox(State())

  var isFired: Bool { state.withLockedValue { $0.fired } }

  func fire() {
    let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
      state.fired = true
      defer { state.waiters = [] }
      return state.waiters
    }
    for waiter in waiters {
      waiter.resume()
    }
  }

  func wait() async {
    await withCheckedContinuation { continuation in
      let fired = state.withLockedValue { state -> Bool in
        if state.fired { return true }
        state.waiters.append(continuation)
        return false
      }
      if fired { continuation.resume() }
    }
  }
}

/// Milliseconds of a clock that never jumps (rests and backoffs).
enum MonotonicClock {
  static func nowMs() -> Int64 {
    Int64(nowNs() / 1_000_000)
  }

  static func nowNs() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
  }
}
