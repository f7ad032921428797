import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import ServiceLifecycle
import StreamBusStorage
import StreamBusTransport

/// A failure starting or running a broker (not a request error).
public struct BrokerError: Error, Sendable, CustomStringConvertible {
  public let message: String

  public init(_ message: String) {
    self.message = message
  }

  public var description: String { message }
}

/// A single-process broker: hosts every partition, is the leader of all of them, and keeps
/// topics in its data directory.
///
/// `start` locks the data directory, opens every partition log and binds the listener
/// (connections are served from then on). `run` serves until a graceful shutdown (SIGTERM
/// or SIGINT through a `ServiceGroup`, task cancellation, or `shutdownGracefully()`), then
/// lets in-flight requests finish, flushes and closes every log and releases the lock.
public final class StandaloneBroker: Service, Sendable {
  /// The bound address (the OS-chosen port when listening on port 0).
  public let localAddress: HostPort
  public let configuration: BrokerConfiguration
  public let replicaManager: ReplicaManager
  private let threadPool: NIOThreadPool
  private let router: RequestRouter
  private let server: FrameServer
  private let directoryLock: DataDirectoryLock
  private let logger: Logger

  private init(
    configuration: BrokerConfiguration, replicaManager: ReplicaManager,
    threadPool: NIOThreadPool, router: RequestRouter, server: FrameServer,
    directoryLock: DataDirectoryLock, logger: Logger
  ) {
    self.threadPool = threadPool
    self.router = router
    self.localAddress = server.localAddress
    self.configuration = configuration
    self.replicaManager = replicaManager
    self.server = server
    self.directoryLock = directoryLock
    self.logger = logger
  }

  public static func start(configuration: BrokerConfiguration, logger: Logger) async throws
    -> StandaloneBroker
  {
    let (directoryLock, threadPool) = try prepareDataDirectory(configuration)
    do {
      let producerIdSource = try FileProducerIdSource(
        dataDirectory: configuration.dataDirectory, fileSystem: configuration.fileSystem)
      let replicaManager = try await ReplicaManager.open(
        configuration: configuration, threadPool: threadPool, logger: logger)
      let router = RequestRouter(
        replicaManager: replicaManager, configuration: configuration,
        producerIdSource: producerIdSource, logger: logger)
      let server: FrameServer
      do {
        server = try await ClusterBroker.bindServer(
          configuration: configuration, router: router, logger: logger)
      } catch {
        await replicaManager.closeAll()
        throw error
      }
      router.setAdvertisedPort(server.localAddress.port)
      let broker = StandaloneBroker(
        configuration: configuration, replicaManager: replicaManager, threadPool: threadPool,
        router: router, server: server, directoryLock: directoryLock, logger: logger)
      if let readyFile = configuration.readyFile {
        do {
          try writeReadyFile(readyFile, address: server.localAddress)
        } catch {
          await server.shutdownGracefully()
          await replicaManager.closeAll()
          throw error
        }
      }
      return broker
    } catch {
      try? await threadPool.shutdownGracefully()
      directoryLock.release()
      throw error
    }
  }

  /// Serves until a graceful shutdown, then drains connections, flushes and closes every
  /// partition log and releases the data directory.
  public func run() async throws {
    let replicaManager = replicaManager
    let configuration = configuration
    let maintenance = Task {
      await Self.runMaintenance(replicaManager: replicaManager, configuration: configuration)
    }
    let router = router
    try await withGracefulShutdownHandler {
      try await server.run()
    } onGracefulShutdown: {
      Task { await router.beginShutdown() }
    }
    await router.beginShutdown()
    maintenance.cancel()
    _ = await maintenance.value
    await replicaManager.closeAll()
    try? await threadPool.shutdownGracefully()
    if let readyFile = configuration.readyFile {
      // A script waiting for the next start must not find this run's address.
      unlink(readyFile)
    }
    directoryLock.release()
    logger.info("broker stopped; all partition logs flushed and closed")
  }

  /// Stops accepting connections and lets `run` finish its shutdown.
  public func shutdownGracefully() async {
    await router.beginShutdown()
    await server.shutdownGracefully()
  }

  /// Ticks every replica (acks=all timeouts, interval flushes, flush retries) and applies
  /// retention every `retentionCheckIntervalMs`, the first time right after start (so a
  /// restart with lower retention frees disk space at once). `afterTick` runs after each
  /// tick with the replicas and the tick's time (cluster mode adds its checks there).
  static func runMaintenance(
    replicaManager: ReplicaManager, configuration: BrokerConfiguration,
    afterTick: @Sendable ([PartitionReplica], Int64) async -> Void = { _, _ in }
  ) async {
    var lastRetentionMs = Int64.min / 2
    var lastDiskProbeMs = Int64.min / 2
    while !Task.isCancelled {
      try? await Task.sleep(for: .milliseconds(configuration.maintenanceIntervalMs))
      if Task.isCancelled { break }
      let nowMs = PartitionLog.wallClockMs()
      let retentionDue = nowMs - lastRetentionMs >= configuration.retentionCheckIntervalMs
      if retentionDue {
        lastRetentionMs = nowMs
      }
      let replicas = replicaManager.allReplicas()
      for replica in replicas {
        await replica.tick(nowMs: nowMs)
        if retentionDue {
          await replica.applyRetention(nowMs: nowMs)
        }
      }
      // A full disk counts as full until a probe write finds space (DiskSpaceMonitor).
      if replicaManager.diskSpace.isFull,
        nowMs - lastDiskProbeMs >= configuration.diskFullProbeIntervalMs
      {
        lastDiskProbeMs = nowMs
        await replicaManager.probeDiskSpace()
      }
      await afterTick(replicas, nowMs)
    }
  }

  /// Writes "host:port" to `path` through a temporary file and a rename, so a reader sees
  /// either no file or the whole address.
  static func writeReadyFile(_ path: String, address: HostPort) throws {
    let temporaryPath = path + ".tmp"
    let text = address.description + "\n"
    guard let file = fopen(temporaryPath, "w") else {
      throw BrokerError(
        "cannot write ready file \(temporaryPath): \(String(cString: strerror(errno)))")
    }
    let written = fputs(text, file)
    let closed = fclose(file)
    guard written >= 0, closed == 0 else {
      throw BrokerError(
        "cannot write ready file \(temporaryPath): \(String(cString: strerror(errno)))")
    }
    guard rename(temporaryPath, path) == 0 else {
      throw BrokerError(
        "cannot rename \(temporaryPath) to \(path): \(String(cString: strerror(errno)))")
    }
  }
}

/// What both broker kinds do before opening any log: drop a stale ready file (a file left
/// by a crashed run would tell waiting scripts a stale address), create and lock the data
/// directory, and start the thread pool for blocking file work.
func prepareDataDirectory(_ configuration: BrokerConfiguration) throws -> (
  DataDirectoryLock, NIOThreadPool
) {
  if let readyFile = configuration.readyFile {
    unlink(readyFile)
  }
  try configuration.fileSystem.createDirectory(configuration.dataDirectory)
  let directoryLock = try DataDirectoryLock(directory: configuration.dataDirectory)
  let threadPool = NIOThreadPool(numberOfThreads: configuration.flushThreadCount)
  threadPool.start()
  return (directoryLock, threadPool)
}

/// An exclusive `flock` on `<data-dir>/.lock`, so two brokers never share a data directory.
final class DataDirectoryLock: Sendable {
  static let fileName = ".lock"
  /// nil once released, so a second release cannot close a reused descriptor.
  private let descriptor: NIOLockedValueBox<Int32?>
  let path: String

  init(directory: String) throws {
    path = directory + "/" + Self.fileName
    let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw BrokerError("cannot open \(path): \(String(cString: strerror(errno)))")
    }
    guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
      let reason = String(cString: strerror(errno))
      close(descriptor)
      throw BrokerError(
        "data directory \(directory) is in use by another broker (cannot lock \(path): \(reason))")
    }
    self.descriptor = NIOLockedValueBox(descriptor)
  }

  /// Releases the lock (closing the descriptor drops the flock); later calls do nothing.
  func release() {
    let descriptor = self.descriptor.withLockedValue { descriptor -> Int32? in
      defer { descriptor = nil }
      return descriptor
    }
    if let descriptor {
      close(descriptor)
    }
  }
}
