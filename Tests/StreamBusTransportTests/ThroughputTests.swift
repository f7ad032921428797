import Foundation
import Testing

@testable import StreamBusTransport

/// Loopback throughput, run on demand: `STREAMBUS_TRANSPORT_BENCH=1 swift test --filter
/// ThroughputTests`. Off by default because timing on a shared machine proves nothing, and
/// the numbers only mean something in a release build.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["STREAMBUS_TRANSPORT_BENCH"] == "1"))
struct ThroughputTests {
  /// Sends `requestCount` requests through `windowSize` concurrent senders on one connection.
  private func pipelined(
    connection: FrameConnection, requestCount: Int, windowSize: Int, body: [UInt8]
  ) async throws -> Int {
    try await withThrowingTaskGroup(of: Int.self) { group in
      for worker in 0..<windowSize {
        group.addTask {
          var responseBytes = 0
          var index = worker
          while index < requestCount {
            responseBytes += try await connection.send(
              makeRequest(correlationId: Int32(index), body: body)
            ).count
            index += windowSize
          }
          return responseBytes
        }
      }
      return try await group.reduce(0, +)
    }
  }

  @Test func produceShapedRequests() async throws {
    // A produce batch of 16 records of 1 KiB each; the reply is small.
    let handler = ClosureHandler { frame, _ in
      .respond(makeResponse(correlationId: correlationId(of: frame), body: [0, 0]))
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let recordsPerRequest = 16
    let body = [UInt8](repeating: 7, count: recordsPerRequest * 1024)
    let requestCount = 5000
    let started = ContinuousClock.now
    _ = try await pipelined(
      connection: connection, requestCount: requestCount, windowSize: 32, body: body)
    let seconds = (ContinuousClock.now - started) / .seconds(1)
    let records = Double(requestCount * recordsPerRequest)
    print(
      "produce: \(Int(records / seconds)) records/s of 1 KiB, "
        + "\(Int(Double(requestCount) / seconds)) requests/s")
    await connection.close()
    await server.shutdownGracefully()
  }

  @Test func fetchShapedResponses() async throws {
    let responseBody = [UInt8](repeating: 3, count: 1024 * 1024)
    let handler = ClosureHandler { frame, _ in
      .respond(makeResponse(correlationId: correlationId(of: frame), body: responseBody))
    }
    let server = try await startServer(handler)
    let connection = try await connect(server)
    let started = ContinuousClock.now
    let bytes = try await pipelined(
      connection: connection, requestCount: 2000, windowSize: 8, body: [])
    let seconds = (ContinuousClock.now - started) / .seconds(1)
    print("fetch: \(Int(Double(bytes) / seconds / 1_000_000)) MB/s in 1 MiB responses")
    await connection.close()
    await server.shutdownGracefully()
  }
}
