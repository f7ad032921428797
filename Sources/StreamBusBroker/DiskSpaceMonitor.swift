import Logging
import NIOConcurrencyHelpers
import NIOPosix
import StreamBusStorage

/// Whether this broker's data disk is full, as its writes see it.
///
/// Any write to the data directory that fails with ENOSPC/EDQUOT (`StorageError.noSpace`:
/// a produce, a replicated append, a flush, a leader-epoch or metadata file) marks the disk
/// full. The disk counts as full until a probe succeeds: `probe()` writes and fsyncs
/// `probeBytes` into a scratch file of the data directory and removes it. Requiring that
/// much free space, rather than any successful write, keeps a broker that got a few pages
/// back from flapping between full and not.
///
/// What being full changes is decided by the owner: the replica fetchers stop fetching
/// (nothing could be appended; the follower falls out of the ISR by the lag rule), and a
/// cluster broker asks the controller to move its leaderships away (controlled shutdown
/// without exiting) and registers again once a probe succeeds. See docs/databroker.md,
/// "Disk full".
public final class DiskSpaceMonitor: Sendable {
  public nonisolated let dataDirectory: String
  /// Free space a probe must find (written and fsynced) before the disk counts as usable.
  public nonisolated let probeBytes: Int
  private let fileSystem: any LogFileSystem
  private let logger: Logger

  private struct State {
    /// The write failure that marked the disk full; nil while it is not.
    var failure: String?
    /// Counts transitions to full, so an owner notices a full period it did not see start.
    var fullPeriods = 0
  }

  private let state = NIOLockedValueBox(State())

  public static let probeFileName = ".disk-space-probe"
  public static let probeBytesDefault = 1 << 20

  public init(
    dataDirectory: String, fileSystem: any LogFileSystem, logger: Logger,
    probeBytes: Int = DiskSpaceMonitor.probeBytesDefault
  ) {
    precondition(probeBytes > 0, "probeBytes must be positive")
    self.dataDirectory = dataDirectory
    self.fileSystem = fileSystem
    self.logger = logger
    self.probeBytes = probeBytes
  }

  /// True from a write that failed for lack of space until a probe succeeds.
  public var isFull: Bool { state.withLockedValue { $0.failure != nil } }

  /// The write failure that marked the disk full, while it is.
  public var fullReason: String? { state.withLockedValue { $0.failure } }

  /// How many times the disk became full since the broker started.
  public var fullPeriods: Int { state.withLockedValue { $0.fullPeriods } }

  /// Notes a failed write; only a full disk (`noSpace`) changes anything. Returns whether
  /// this failure is the one that marked the disk full.
  @discardableResult
  public func noteWriteFailure(_ error: any Error, while action: String) -> Bool {
    guard let error = error as? StorageError, error.code == .noSpace else { return false }
    let marked = state.withLockedValue { state -> Bool in
      guard state.failure == nil else { return false }
      state.failure = "\(action): \(error.message)"
      state.fullPeriods += 1
      return true
    }
    if marked {
      logger.error(
        "data disk is full: writes fail with KAFKA_STORAGE_ERROR until space is freed",
        metadata: ["dataDirectory": "\(dataDirectory)", "failure": "\(action): \(error)"])
    }
    return marked
  }

  /// Writes and fsyncs `probeBytes` into a scratch file and removes it. Blocking: run it on
  /// the thread pool. Returns whether it succeeded; on success the disk is no longer full.
  @discardableResult
  public func probe() -> Bool {
    let path = dataDirectory + "/" + Self.probeFileName
    var succeeded = false
    do {
      let descriptor = try fileSystem.open(path, .createTruncate)
      defer { fileSystem.close(descriptor) }
      let chunk = [UInt8](repeating: 0, count: min(probeBytes, 64 << 10))
      var written = 0
      while written < probeBytes {
        let count = min(chunk.count, probeBytes - written)
        try chunk.withUnsafeBytes { buffer in
          var done = 0
          while done < count {
            let wrote = try fileSystem.write(
              descriptor, UnsafeRawBufferPointer(rebasing: buffer[done..<count]),
              at: Int64(written + done))
            guard wrote > 0 else {
              throw StorageError(.ioFailure, "probe write made no progress", path: path)
            }
            done += wrote
          }
        }
        written += count
      }
      try fileSystem.syncData(descriptor)
      succeeded = true
    } catch {
      succeeded = false
    }
    if fileSystem.fileExists(path) {
      try? fileSystem.remove(path)
    }
    guard succeeded else { return false }
    let wasFull = state.withLockedValue { state -> String? in
      defer { state.failure = nil }
      return state.failure
    }
    if let wasFull {
      logger.notice(
        "data disk has space again: a \(probeBytes)-byte probe write succeeded",
        metadata: ["dataDirectory": "\(dataDirectory)", "wasFullBecause": "\(wasFull)"])
    }
    return true
  }

  /// `probe()` on the thread pool; false when the pool is stopped.
  public func probe(on threadPool: NIOThreadPool) async -> Bool {
    (try? await threadPool.runIfActive { self.probe() }) ?? false
  }
}
