import ArgumentParser
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The raw limits of the disk the broker writes to: what any durable log can at best reach
/// on this machine.
struct DiskCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "disk",
    abstract: "Raw disk limits: sequential write with periodic fdatasync, 4 KiB write+fdatasync.")

  @Option(help: "Directory to test in (a temp file is created and removed).")
  var dir: String = "."

  @Option(help: "Bytes written in the sequential test.")
  var sequentialBytes: Int = 1 << 30

  @Option(help: "Size of each write() in the sequential test.")
  var chunkBytes: Int = 1 << 20

  @Option(help: "fdatasync after this many bytes in the sequential test.")
  var syncEveryBytes: Int = 4 << 20

  @Option(help: "Number of 4 KiB append+fdatasync operations.")
  var syncOps: Int = 2000

  @Option(help: "Bytes per append in the sync latency test.")
  var syncWriteBytes: Int = 4096

  @Option(help: "text or json (one JSON object per result).")
  var output: OutputFormat = .text

  func validate() throws {
    guard chunkBytes > 0, sequentialBytes >= chunkBytes, syncEveryBytes >= chunkBytes else {
      throw ValidationError("need 0 < --chunk-bytes <= --sync-every-bytes, --sequential-bytes")
    }
    guard syncOps > 0, syncWriteBytes > 0 else {
      throw ValidationError("--sync-ops and --sync-write-bytes must be positive")
    }
  }

  func run() async throws {
    let directory = URL(fileURLWithPath: dir, isDirectory: true).standardizedFileURL
    let file = directory.appendingPathComponent("sbbench-disk-\(getpid()).tmp")
    defer { unlink(file.path) }

    let sequential = try sequentialWrite(path: file.path)
    sequential.print(format: output)
    unlink(file.path)
    let sync = try syncLatency(path: file.path, onHelperThread: false)
    sync.print(format: output)
    unlink(file.path)
    let helperSync = try syncLatency(path: file.path, onHelperThread: true)
    helperSync.print(format: output)
  }

  private var parameters: [String: String] {
    ["dir": dir]
  }

  func sequentialWrite(path: String) throws -> BenchResult {
    let descriptor = try openForWriting(path)
    defer { close(descriptor) }
    let chunk = [UInt8](repeating: 0x5a, count: chunkBytes)
    var written = 0
    var sinceSync = 0
    let start = ContinuousClock.now
    while written < sequentialBytes {
      try writeAll(descriptor, chunk)
      written += chunk.count
      sinceSync += chunk.count
      if sinceSync >= syncEveryBytes {
        try dataSync(descriptor)
        sinceSync = 0
      }
    }
    try dataSync(descriptor)
    let elapsed = (ContinuousClock.now - start).secondsDouble
    var result = BenchResult(
      benchmark: "disk.sequential-write",
      parameters: parameters.merging([
        "chunkBytes": "\(chunkBytes)", "syncEveryBytes": "\(syncEveryBytes)",
      ]) { $1 },
      elapsedSeconds: elapsed)
    result.bytes = written
    result.mbPerSecond = rounded(megabytesPerSecond(bytes: written, seconds: elapsed))
    return result
  }

  /// Appends `syncWriteBytes` and waits for an fdatasync, `syncOps` times.
  ///
  /// - Parameter onHelperThread: issue the fdatasync from a second thread while this one
  ///   waits, as the broker does (its flushes run on a thread pool). On some VMs the two
  ///   differ by an order of magnitude because of how an idle vCPU is woken, so both are
  ///   reported.
  func syncLatency(path: String, onHelperThread: Bool) throws -> BenchResult {
    let descriptor = try openForWriting(path)
    defer { close(descriptor) }
    let block = [UInt8](repeating: 0xa5, count: syncWriteBytes)
    var latencies = LatencyRecorder()
    let helper = onHelperThread ? SyncHelperThread(descriptor: descriptor) : nil
    defer { helper?.stop() }
    let start = ContinuousClock.now
    for _ in 0..<syncOps {
      let opStart = ContinuousClock.now
      try writeAll(descriptor, block)
      if let helper {
        guard helper.sync() == 0 else {
          throw ValidationError("fdatasync failed: \(String(cString: strerror(errno)))")
        }
      } else {
        try dataSync(descriptor)
      }
      latencies.record(ContinuousClock.now - opStart)
    }
    let elapsed = (ContinuousClock.now - start).secondsDouble
    var result = BenchResult(
      benchmark: onHelperThread ? "disk.append-fdatasync-helper-thread" : "disk.append-fdatasync",
      parameters: parameters.merging(["writeBytes": "\(syncWriteBytes)"]) { $1 },
      elapsedSeconds: elapsed)
    result.bytes = syncOps * syncWriteBytes
    result.opsPerSecond = rounded(Double(syncOps) / elapsed)
    result.mbPerSecond = rounded(
      megabytesPerSecond(bytes: syncOps * syncWriteBytes, seconds: elapsed), places: 2)
    result.latency = latencies.summary
    return result
  }

  private func openForWriting(_ path: String) throws -> Int32 {
    let descriptor = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    guard descriptor >= 0 else {
      throw ValidationError("cannot create \(path): \(String(cString: strerror(errno)))")
    }
    return descriptor
  }

  private func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) throws {
    var offset = 0
    while offset < bytes.count {
      let count = bytes.withUnsafeBytes { buffer in
        write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
      }
      if count < 0 {
        if errno == EINTR { continue }
        throw ValidationError("write failed: \(String(cString: strerror(errno)))")
      }
      offset += count
    }
  }

  private func dataSync(_ descriptor: Int32) throws {
    guard fdatasync(descriptor) == 0 else {
      throw ValidationError("fdatasync failed: \(String(cString: strerror(errno)))")
    }
  }
}

/// A thread that runs fdatasync on request, for `disk` runs that mimic the broker's flush
/// pool. The requesting thread blocks on a semaphore until the result is in.
final class SyncHelperThread: @unchecked Sendable {
  private let descriptor: Int32
  private let requested = DispatchSemaphore(value: 0)
  private let finished = DispatchSemaphore(value: 0)
  // Written by the helper before `finished` is signalled, read by the caller after.
  private var result: Int32 = 0
  private var stopping = false
  private var thread: Thread?

  init(descriptor: Int32) {
    self.descriptor = descriptor
    let thread = Thread { [unowned self] in self.loop() }
    self.thread = thread
    thread.start()
  }

  private func loop() {
    while true {
      requested.wait()
      if stopping { return }
      result = fdatasync(descriptor)
      finished.signal()
    }
  }

  func sync() -> Int32 {
    requested.signal()
    finished.wait()
    return result
  }

  func stop() {
    stopping = true
    requested.signal()
  }
}
