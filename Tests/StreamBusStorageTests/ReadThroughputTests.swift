import Foundation
import StreamBusRecords
import Testing

@testable import StreamBusStorage

@Suite struct ReadThroughputTests {
  /// Sequential consumption of a 64 MiB log from the page cache, as a consumer or follower
  /// does it. Prints the rate; the check is only that every byte came back.
  @Test func sequentialReadThroughput() throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var config = LogConfig()
    config.segmentBytes = 16 << 20
    config.retentionMs = nil
    let log = try PartitionLog(
      directory: directory.path, config: config, fileSystem: unsyncedFileSystem())
    let batch = makeBatch(records: 16, valueBytes: 1_000)
    var appendBuffer: [UInt8] = []
    for _ in 0..<16 { appendBuffer += batch }
    let totalBytes = 64 << 20
    let clock = ContinuousClock()
    let appendElapsed = try clock.measure {
      while log.sizeBytes < Int64(totalBytes) {
        try log.append(appendBuffer, partitionLeaderEpoch: 0)
      }
    }
    let appendSeconds =
      Double(appendElapsed.components.seconds)
      + Double(appendElapsed.components.attoseconds) / 1e18
    print(
      "append (validate + CRC + pwrite, no fsync): \(String(format: "%.2f", Double(log.sizeBytes) / appendSeconds / 1e9)) GB/s in \(appendBuffer.count)-byte appends"
    )
    var bytesRead = 0
    var rounds = 0
    let elapsed = try clock.measure {
      for _ in 0..<3 {
        var offset: Int64 = 0
        while offset < log.logEndOffset {
          let result = try log.read(from: offset, maxBytes: 1 << 20)
          bytesRead += result.bytes.count
          offset = result.nextOffset
        }
        rounds += 1
      }
    }
    #expect(Int64(bytesRead) == log.sizeBytes * Int64(rounds))
    let seconds =
      Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print(
      "sequential read: \(bytesRead >> 20) MiB in \(String(format: "%.3f", seconds)) s = \(String(format: "%.2f", Double(bytesRead) / seconds / 1e9)) GB/s (1 MiB reads)"
    )
  }
}
