import ArgumentParser
import Foundation
import StreamBusRaft
import StreamBusRaftSQLite
import StreamBusSQLite

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Durable append throughput and latency of `SQLiteRaftStorage`, next to the raw
/// write + fdatasync latency of the same directory: a commit can never be faster than one
/// fdatasync, so the ratio shows what SQLite adds on top of the disk.
///
/// Each case interleaves the two: one raw 4 KiB write + fdatasync, then one storage append, and
/// so on. Shared and cloud disks change speed from one second to the next (burst credits, IOPS
/// throttling, neighbours), so measuring them one after the other would compare different disks.
struct StorageBenchmarkCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "storage",
    abstract: "SQLite Raft storage appends (fsync per batch) vs raw 4 KiB write + fdatasync.")

  @Option(help: "Directory for the benchmark files (must be on the disk to measure).")
  var directory: String?

  @Option(help: "Comma-separated batch sizes (entries per append transaction).")
  var batchSizes: String = "1,16,256"

  @Option(help: "Payload bytes per entry.")
  var entryBytes: Int = 256

  @Option(help: "Measured seconds per batch size (raw syncs and appends together).")
  var caseSeconds: Double = 2

  @Option(help: "Unmeasured iterations before each case (after the WAL warm-up).")
  var warmupBatches: Int = 20

  @Option(help: "Repetitions of the whole set; the summary reports medians across runs.")
  var runs: Int = 3

  @Option(
    help: "WAL pages between automatic checkpoints (0: never, as a driver that checkpoints itself)."
  )
  var walAutoCheckpointPages: Int = 1_000

  @Option(help: "Output format: text or json.")
  var output: OutputFormat = .text

  func validate() throws {
    guard !parsedBatchSizes.isEmpty, parsedBatchSizes.allSatisfy({ $0 > 0 && $0 <= 100_000 })
    else {
      throw ValidationError("--batch-sizes needs positive sizes up to 100000, got \(batchSizes)")
    }
    guard entryBytes >= 0, entryBytes <= 1 << 20 else {
      throw ValidationError("--entry-bytes must be in 0...1048576")
    }
    guard walAutoCheckpointPages >= 0 else {
      throw ValidationError("--wal-auto-checkpoint-pages must not be negative")
    }
    guard caseSeconds > 0, runs > 0, warmupBatches >= 0 else {
      throw ValidationError("--case-seconds and --runs must be positive")
    }
  }

  private var parsedBatchSizes: [Int] {
    batchSizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
  }

  func run() throws {
    let fileManager = FileManager.default
    let workDirectory: URL
    let ownsDirectory = directory == nil
    if let directory {
      workDirectory = URL(fileURLWithPath: directory, isDirectory: true)
    } else {
      workDirectory = fileManager.temporaryDirectory
        .appendingPathComponent("raft-bench-\(ProcessInfo.processInfo.processIdentifier)")
    }
    try fileManager.createDirectory(at: workDirectory, withIntermediateDirectories: true)
    defer {
      if ownsDirectory { try? fileManager.removeItem(at: workDirectory) }
    }

    var runResults: [RunResult] = []
    for run in 1...runs {
      var cases: [StorageCaseResult] = []
      for batchSize in parsedBatchSizes {
        cases.append(try measureCase(in: workDirectory, batchSize: batchSize))
      }
      let result = RunResult(run: run, storage: cases)
      if output == .text { print(result.text) }
      runResults.append(result)
    }
    let report = BenchmarkReport(
      directory: workDirectory.path, sqliteVersion: SQLiteDatabase.libraryVersion,
      entryBytes: entryBytes, caseSeconds: caseSeconds, runs: runResults)
    switch output {
    case .json:
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try encoder.encode(report), as: UTF8.self))
    case .text:
      print(report.summaryText)
    }
  }

  private func measureCase(in directory: URL, batchSize: Int) throws -> StorageCaseResult {
    let raw = try RawSyncFile(
      path: directory.appendingPathComponent("raw-fdatasync.bin").path)
    defer { raw.remove() }
    let path = directory.appendingPathComponent("raft-bench-\(batchSize).sqlite").path
    removeDatabaseFiles(path)
    defer { removeDatabaseFiles(path) }
    let storage = try SQLiteRaftStorage(
      path: path, clusterID: "raft-bench", nodeID: 1, bootstrap: ConfState(voters: [1]),
      options: .init(walAutoCheckpointPages: walAutoCheckpointPages))
    defer { storage.close() }

    let payload = (0..<entryBytes).map { UInt8(truncatingIfNeeded: $0 &* 131) }
    var nextIndex: LogIndex = 1
    // Bring the WAL to its steady state first: until the first automatic checkpoint the WAL
    // file grows with every commit, and fdatasync of a growing file also has to flush its size
    // (a file-system journal commit). A running node reuses its WAL from the start after each
    // checkpoint, so measuring the growth phase would overstate the cost of a commit.
    let warmupEntries = 2 * walAutoCheckpointPages * 4_096 / max(entryBytes, 64)
    while nextIndex <= LogIndex(warmupEntries) {
      let entries = (0..<256).map { offset in
        Entry(term: 1, index: nextIndex + LogIndex(offset), kind: .normal, data: payload)
      }
      try storage.append(entries)
      nextIndex += 256
    }
    var appendLatencies: [Duration] = []
    var rawLatencies: [Duration] = []
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(caseSeconds)
    var iteration = 0
    while iteration < warmupBatches || clock.now < deadline {
      let rawLatency = try raw.writeAndSync()
      let entries = (0..<batchSize).map { offset in
        Entry(term: 1, index: nextIndex + LogIndex(offset), kind: .normal, data: payload)
      }
      let start = clock.now
      try storage.append(entries)
      let appendLatency = clock.now - start
      if iteration >= warmupBatches {
        rawLatencies.append(rawLatency)
        appendLatencies.append(appendLatency)
      }
      nextIndex += LogIndex(batchSize)
      iteration += 1
    }
    let appendSeconds = seconds(appendLatencies.reduce(.zero, +))
    let appendSummary = LatencySummary(appendLatencies)
    let rawSummary = LatencySummary(rawLatencies)
    let entriesPerSecond = Double(appendLatencies.count * batchSize) / appendSeconds
    // One durable flush per append is the floor of an append's cost, so no storage can beat
    // `batchSize` entries per raw flush on this disk, measured in the same run.
    let ceiling = Double(batchSize) * 1e6 / rawSummary.meanMicroseconds
    return StorageCaseResult(
      batchSize: batchSize, entryBytes: entryBytes, batches: appendLatencies.count,
      entriesPerSecond: entriesPerSecond,
      fdatasyncCeilingEntriesPerSecond: ceiling, fractionOfCeiling: entriesPerSecond / ceiling,
      batchLatency: appendSummary, rawFdatasyncLatency: rawSummary,
      p50RatioToRawFdatasync: appendSummary.p50Microseconds / rawSummary.p50Microseconds)
  }

  private func removeDatabaseFiles(_ path: String) {
    for suffix in ["", "-wal", "-shm", ".lock"] {
      unlink(path + suffix)
    }
  }
}

/// A preallocated file overwritten 4 KiB at a time, each write followed by fdatasync. Like
/// SQLite's WAL after its first checkpoint, the file size does not change, so fdatasync flushes
/// data only, not metadata.
final class RawSyncFile {
  static let writeBytes = 4_096
  static let regionBytes = 8 << 20

  let path: String
  private let descriptor: Int32
  private let block = [UInt8](repeating: 0xa5, count: RawSyncFile.writeBytes)
  private var nextBlock = 0

  init(path: String) throws {
    self.path = path
    descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    guard descriptor >= 0 else { throw BenchmarkError("open \(path): \(errnoText())") }
    for blockIndex in 0..<(Self.regionBytes / Self.writeBytes) {
      try write(at: blockIndex * Self.writeBytes)
    }
    guard fsync(descriptor) == 0 else { throw BenchmarkError("fsync: \(errnoText())") }
  }

  /// One 4 KiB write and fdatasync; returns how long both took.
  func writeAndSync() throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    try write(at: nextBlock * Self.writeBytes)
    #if os(Linux)
      let result = fdatasync(descriptor)
    #else
      let result = fsync(descriptor)
    #endif
    guard result == 0 else { throw BenchmarkError("fdatasync: \(errnoText())") }
    let elapsed = clock.now - start
    nextBlock = (nextBlock + 1) % (Self.regionBytes / Self.writeBytes)
    return elapsed
  }

  func remove() {
    close(descriptor)
    unlink(path)
  }

  private func write(at offset: Int) throws {
    let written = block.withUnsafeBytes { bytes in
      pwrite(descriptor, bytes.baseAddress, bytes.count, off_t(offset))
    }
    guard written == block.count else { throw BenchmarkError("pwrite: \(errnoText())") }
  }
}

struct BenchmarkError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

private func errnoText() -> String {
  String(cString: strerror(errno))
}

private func seconds(_ duration: Duration) -> Double {
  let parts = duration.components
  return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
}

// MARK: Results

struct LatencySummary: Codable {
  var count: Int
  var p50Microseconds: Double
  var p99Microseconds: Double
  var meanMicroseconds: Double
  var maxMicroseconds: Double

  init(_ latencies: [Duration]) {
    let sorted = latencies.map { seconds($0) * 1e6 }.sorted()
    count = sorted.count
    func percentile(_ fraction: Double) -> Double {
      guard !sorted.isEmpty else { return 0 }
      let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
      return sorted[min(max(rank, 0), sorted.count - 1)]
    }
    p50Microseconds = percentile(0.5)
    p99Microseconds = percentile(0.99)
    meanMicroseconds = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
    maxMicroseconds = sorted.last ?? 0
  }
}

struct StorageCaseResult: Codable {
  var batchSize: Int
  var entryBytes: Int
  var batches: Int
  /// Entries over the summed time of the append calls (each one transaction with one fsync).
  var entriesPerSecond: Double
  /// `batchSize` entries per mean raw 4 KiB write + fdatasync: the most any storage that makes
  /// each append durable with one flush can do on this disk.
  var fdatasyncCeilingEntriesPerSecond: Double
  /// `entriesPerSecond` over that ceiling.
  var fractionOfCeiling: Double
  var batchLatency: LatencySummary
  /// 4 KiB write + fdatasync latency, sampled alternately with the appends.
  var rawFdatasyncLatency: LatencySummary
  var p50RatioToRawFdatasync: Double
}

struct RunResult: Codable {
  var run: Int
  var storage: [StorageCaseResult]

  var text: String {
    storage.map { result in
      String(
        format: "run %d  batch %5d: %10.0f entries/s (%3.0f%% of the fdatasync ceiling %10.0f)"
          + "  p50 %8.0f us  p99 %8.0f us"
          + "  | raw fdatasync mean %6.0f us  p50 %6.0f us  p99 %6.0f us  (append p50 %.2fx raw)",
        run, result.batchSize, result.entriesPerSecond, 100 * result.fractionOfCeiling,
        result.fdatasyncCeilingEntriesPerSecond, result.batchLatency.p50Microseconds,
        result.batchLatency.p99Microseconds, result.rawFdatasyncLatency.meanMicroseconds,
        result.rawFdatasyncLatency.p50Microseconds, result.rawFdatasyncLatency.p99Microseconds,
        result.p50RatioToRawFdatasync)
    }.joined(separator: "\n")
  }
}

/// Medians across runs of each case's headline numbers.
struct MedianCase: Codable {
  var batchSize: Int
  var entriesPerSecond: Double
  var fdatasyncCeilingEntriesPerSecond: Double
  var fractionOfCeiling: Double
  var p50Microseconds: Double
  var p99Microseconds: Double
  var rawFdatasyncMeanMicroseconds: Double
  var rawFdatasyncP50Microseconds: Double
  var rawFdatasyncP99Microseconds: Double
  var p50RatioToRawFdatasync: Double
}

struct BenchmarkReport: Codable {
  var directory: String
  var sqliteVersion: String
  var entryBytes: Int
  var caseSeconds: Double
  var runs: [RunResult]
  var median: [MedianCase]

  init(
    directory: String, sqliteVersion: String, entryBytes: Int, caseSeconds: Double,
    runs: [RunResult]
  ) {
    self.directory = directory
    self.sqliteVersion = sqliteVersion
    self.entryBytes = entryBytes
    self.caseSeconds = caseSeconds
    self.runs = runs
    let batchSizes = runs.first?.storage.map(\.batchSize) ?? []
    median = batchSizes.enumerated().map { position, batchSize in
      let cases = runs.map { $0.storage[position] }
      return MedianCase(
        batchSize: batchSize,
        entriesPerSecond: Self.median(cases.map(\.entriesPerSecond)),
        fdatasyncCeilingEntriesPerSecond: Self.median(
          cases.map(\.fdatasyncCeilingEntriesPerSecond)),
        fractionOfCeiling: Self.median(cases.map(\.fractionOfCeiling)),
        p50Microseconds: Self.median(cases.map(\.batchLatency.p50Microseconds)),
        p99Microseconds: Self.median(cases.map(\.batchLatency.p99Microseconds)),
        rawFdatasyncMeanMicroseconds: Self.median(
          cases.map(\.rawFdatasyncLatency.meanMicroseconds)),
        rawFdatasyncP50Microseconds: Self.median(cases.map(\.rawFdatasyncLatency.p50Microseconds)),
        rawFdatasyncP99Microseconds: Self.median(cases.map(\.rawFdatasyncLatency.p99Microseconds)),
        p50RatioToRawFdatasync: Self.median(cases.map(\.p50RatioToRawFdatasync)))
    }
  }

  var summaryText: String {
    var lines = [
      "",
      "medians of \(runs.count) runs (SQLite \(sqliteVersion), \(entryBytes) B entries, in"
        + " \(directory)):",
    ]
    for result in median {
      lines.append(
        String(
          format: "batch %5d: %10.0f entries/s (%3.0f%% of the fdatasync ceiling %10.0f)"
            + "  p50 %8.0f us  p99 %8.0f us"
            + "  | raw fdatasync mean %6.0f us  p50 %6.0f us  p99 %6.0f us"
            + "  (append p50 %.2fx raw)",
          result.batchSize, result.entriesPerSecond, 100 * result.fractionOfCeiling,
          result.fdatasyncCeilingEntriesPerSecond, result.p50Microseconds,
          result.p99Microseconds, result.rawFdatasyncMeanMicroseconds,
          result.rawFdatasyncP50Microseconds, result.rawFdatasyncP99Microseconds,
          result.p50RatioToRawFdatasync))
    }
    lines.append(
      "fdatasync ceiling = batch / mean raw 4 KiB write + fdatasync of this run: the most any"
        + " storage flushing once per append can do on this disk.")
    return lines.joined(separator: "\n")
  }

  private static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  }
}
