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
/// write + fdatasync rate of the same directory measured in the same run: a commit can never be
/// faster than one fdatasync, so the ratio shows what SQLite adds on top of the disk.
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

  @Option(help: "Measured seconds per case (raw fdatasync and each batch size).")
  var caseSeconds: Double = 2

  @Option(help: "Unmeasured batches before each case.")
  var warmupBatches: Int = 20

  @Option(help: "Repetitions of the whole set; the summary reports medians across runs.")
  var runs: Int = 3

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
      let raw = try measureRawFdatasync(in: workDirectory)
      var cases: [StorageCaseResult] = []
      for batchSize in parsedBatchSizes {
        cases.append(try measureStorage(in: workDirectory, batchSize: batchSize, raw: raw))
      }
      let result = RunResult(run: run, rawFdatasync: raw, storage: cases)
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

  // MARK: Raw fdatasync

  private static let rawWriteBytes = 4_096
  /// The raw loop overwrites a preallocated region, as SQLite reuses its WAL after a
  /// checkpoint: the file size does not change, so fdatasync flushes data, not metadata.
  private static let rawRegionBytes = 8 << 20

  private func measureRawFdatasync(in directory: URL) throws -> RawSyncResult {
    let path = directory.appendingPathComponent("raw-fdatasync.bin").path
    let descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    guard descriptor >= 0 else { throw BenchmarkError("open \(path): \(errnoText())") }
    defer {
      close(descriptor)
      unlink(path)
    }
    let block = [UInt8](repeating: 0xa5, count: Self.rawWriteBytes)
    let blockCount = Self.rawRegionBytes / Self.rawWriteBytes
    for blockIndex in 0..<blockCount {
      try writeBlock(descriptor, block, at: blockIndex * Self.rawWriteBytes)
    }
    guard fsync(descriptor) == 0 else { throw BenchmarkError("fsync: \(errnoText())") }

    var latencies: [Duration] = []
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(caseSeconds)
    var iteration = 0
    while iteration < warmupBatches || clock.now < deadline {
      let offset = (iteration % blockCount) * Self.rawWriteBytes
      let start = clock.now
      try writeBlock(descriptor, block, at: offset)
      guard dataSync(descriptor) == 0 else { throw BenchmarkError("fdatasync: \(errnoText())") }
      let elapsed = clock.now - start
      if iteration >= warmupBatches { latencies.append(elapsed) }
      iteration += 1
    }
    let summary = LatencySummary(latencies)
    return RawSyncResult(
      writeBytes: Self.rawWriteBytes, syncs: latencies.count,
      syncsPerSecond: Double(latencies.count) / seconds(latencies.reduce(.zero, +)),
      latency: summary)
  }

  private func writeBlock(_ descriptor: Int32, _ block: [UInt8], at offset: Int) throws {
    let written = block.withUnsafeBytes { bytes in
      pwrite(descriptor, bytes.baseAddress, bytes.count, off_t(offset))
    }
    guard written == block.count else { throw BenchmarkError("pwrite: \(errnoText())") }
  }

  private func dataSync(_ descriptor: Int32) -> Int32 {
    #if os(Linux)
      return fdatasync(descriptor)
    #else
      return fsync(descriptor)
    #endif
  }

  // MARK: SQLite storage

  private func measureStorage(
    in directory: URL, batchSize: Int, raw: RawSyncResult
  ) throws -> StorageCaseResult {
    let path = directory.appendingPathComponent("raft-bench-\(batchSize).sqlite").path
    removeDatabaseFiles(path)
    defer { removeDatabaseFiles(path) }
    let storage = try SQLiteRaftStorage(
      path: path, clusterID: "raft-bench", nodeID: 1, bootstrap: ConfState(voters: [1]))
    defer { storage.close() }

    let payload = (0..<entryBytes).map { UInt8(truncatingIfNeeded: $0 &* 131) }
    var nextIndex: LogIndex = 1
    var latencies: [Duration] = []
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(caseSeconds)
    var batch = 0
    while batch < warmupBatches || clock.now < deadline {
      let entries = (0..<batchSize).map { offset in
        Entry(term: 1, index: nextIndex + LogIndex(offset), kind: .normal, data: payload)
      }
      let start = clock.now
      try storage.append(entries)
      let elapsed = clock.now - start
      if batch >= warmupBatches { latencies.append(elapsed) }
      nextIndex += LogIndex(batchSize)
      batch += 1
    }
    let appendSeconds = seconds(latencies.reduce(.zero, +))
    let summary = LatencySummary(latencies)
    return StorageCaseResult(
      batchSize: batchSize, entryBytes: entryBytes, batches: latencies.count,
      entriesPerSecond: Double(latencies.count * batchSize) / appendSeconds,
      batchLatency: summary,
      p50RatioToRawFdatasync: summary.p50Microseconds / raw.latency.p50Microseconds)
  }

  private func removeDatabaseFiles(_ path: String) {
    for suffix in ["", "-wal", "-shm"] {
      unlink(path + suffix)
    }
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

struct RawSyncResult: Codable {
  var writeBytes: Int
  var syncs: Int
  var syncsPerSecond: Double
  var latency: LatencySummary
}

struct StorageCaseResult: Codable {
  var batchSize: Int
  var entryBytes: Int
  var batches: Int
  /// Entries over the summed time of the append calls (each one transaction with one fsync).
  var entriesPerSecond: Double
  var batchLatency: LatencySummary
  var p50RatioToRawFdatasync: Double
}

struct RunResult: Codable {
  var run: Int
  var rawFdatasync: RawSyncResult
  var storage: [StorageCaseResult]

  var text: String {
    var lines = [
      String(
        format: "run %d  raw 4 KiB write+fdatasync: %.0f syncs/s  p50 %.0f us  p99 %.0f us",
        run, rawFdatasync.syncsPerSecond, rawFdatasync.latency.p50Microseconds,
        rawFdatasync.latency.p99Microseconds)
    ]
    for result in storage {
      lines.append(
        String(
          format:
            "run %d  batch %5d: %10.0f entries/s  p50 %8.0f us  p99 %8.0f us  (p50 %.2fx raw)",
          run, result.batchSize, result.entriesPerSecond, result.batchLatency.p50Microseconds,
          result.batchLatency.p99Microseconds, result.p50RatioToRawFdatasync))
    }
    return lines.joined(separator: "\n")
  }
}

/// Medians across runs of each case's headline numbers.
struct MedianSummary: Codable {
  struct Case: Codable {
    var batchSize: Int
    var entriesPerSecond: Double
    var p50Microseconds: Double
    var p99Microseconds: Double
    var p50RatioToRawFdatasync: Double
  }

  var rawFdatasyncPerSecond: Double
  var rawFdatasyncP50Microseconds: Double
  var rawFdatasyncP99Microseconds: Double
  var storage: [Case]
}

struct BenchmarkReport: Codable {
  var directory: String
  var sqliteVersion: String
  var entryBytes: Int
  var caseSeconds: Double
  var runs: [RunResult]
  var median: MedianSummary

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
    median = MedianSummary(
      rawFdatasyncPerSecond: Self.median(runs.map(\.rawFdatasync.syncsPerSecond)),
      rawFdatasyncP50Microseconds: Self.median(runs.map(\.rawFdatasync.latency.p50Microseconds)),
      rawFdatasyncP99Microseconds: Self.median(runs.map(\.rawFdatasync.latency.p99Microseconds)),
      storage: batchSizes.enumerated().map { position, batchSize in
        let cases = runs.map { $0.storage[position] }
        return MedianSummary.Case(
          batchSize: batchSize,
          entriesPerSecond: Self.median(cases.map(\.entriesPerSecond)),
          p50Microseconds: Self.median(cases.map(\.batchLatency.p50Microseconds)),
          p99Microseconds: Self.median(cases.map(\.batchLatency.p99Microseconds)),
          p50RatioToRawFdatasync: Self.median(cases.map(\.p50RatioToRawFdatasync)))
      })
  }

  var summaryText: String {
    var lines = [
      "",
      "medians of \(runs.count) runs (SQLite \(sqliteVersion), \(entryBytes) B entries, in"
        + " \(directory)):",
      String(
        format: "raw 4 KiB write+fdatasync: %.0f syncs/s  p50 %.0f us  p99 %.0f us",
        median.rawFdatasyncPerSecond, median.rawFdatasyncP50Microseconds,
        median.rawFdatasyncP99Microseconds),
    ]
    for result in median.storage {
      lines.append(
        String(
          format: "batch %5d: %10.0f entries/s  p50 %8.0f us  p99 %8.0f us  (p50 %.2fx raw)",
          result.batchSize, result.entriesPerSecond, result.p50Microseconds,
          result.p99Microseconds, result.p50RatioToRawFdatasync))
    }
    return lines.joined(separator: "\n")
  }

  private static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
  }
}
