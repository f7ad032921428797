import Foundation
import StreamBusBroker
import StreamBusProtocol
import Synchronization
import Testing

/// Rough numbers for the report, on demand only (`STREAMBUS_BROKER_THROUGHPUT=1`): they
/// take seconds and depend on the machine and the build configuration.
@Suite(
  .serialized,
  .enabled(if: ProcessInfo.processInfo.environment["STREAMBUS_BROKER_THROUGHPUT"] != nil))
struct ThroughputTests {
  /// `pipelineDepth` produce requests are outstanding on each connection at any time; the
  /// broker answers at most `inflightRequestsMax` of them at once (1: one request after the
  /// other, what the broker did before it completed requests concurrently).
  @Test(arguments: [
    (Int16(-1), 1, 1, 64), (-1, 1, 32, 1), (-1, 1, 32, 64), (-1, 16, 1, 64), (1, 1, 1, 64),
    (1, 1, 32, 64), (1, 16, 1, 64),
  ])
  func produceThroughput(
    acks: Int16, connections: Int, pipelineDepth: Int, inflightRequestsMax: Int
  ) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let fileSystem = FaultyFileSystem()
    let broker = try await TestBroker.start(dataDirectory: directory.path, fileSystem: fileSystem) {
      $0.inflightRequestsMax = inflightRequestsMax
    }
    let setup = try await broker.connect()
    _ = try await setup.createTopic("bench")
    var clients: [TestClient] = []
    for _ in 0..<connections {
      clients.append(try await broker.connect())
    }
    let batch = makeBatch(records: 10, valueBytes: 100)
    let duration = Duration.seconds(2)
    let syncsBefore = fileSystem.syncCount
    let started = ContinuousClock.now
    let producers = clients.flatMap { Array(repeating: $0, count: pipelineDepth) }
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
      for client in producers {
        group.addTask {
          var count = 0
          while ContinuousClock.now - started < duration {
            let result = try await client.produce(topic: "bench", records: batch, acks: acks)
            #expect(result.errorCode == .none)
            count += 1
          }
          return count
        }
      }
      var total = 0
      for try await count in group { total += count }
      return total
    }
    let seconds =
      Double((ContinuousClock.now - started).components.attoseconds) / 1e18
      + Double((ContinuousClock.now - started).components.seconds)
    let syncs = fileSystem.syncCount - syncsBefore
    print(
      "throughput acks=\(acks) connections=\(connections) pipeline depth=\(pipelineDepth) "
        + "inflight max=\(inflightRequestsMax): "
        + "\(Int(Double(total) / seconds)) produce/s, "
        + "\(Int(Double(total * 10) / seconds)) records/s, \(syncs) fdatasyncs "
        + "(\(String(format: "%.1f", Double(total) / Double(max(syncs, 1)))) produces per sync)")
    for client in clients { await client.close() }
    await setup.close()
    try await broker.stop()
  }
}
