import Foundation
import Logging
import StreamBusProtocol
import StreamBusRecords
import StreamBusTransport

/// A minimal protocol-level client over one `FrameConnection`: one request per call, no
/// batching, retries or metadata logic. Tests use it to check the broker independently of the
/// client library; `sbbench --driver raw` uses it to measure the broker alone.
public final class RawBrokerClient: Sendable {
  public let connection: FrameConnection
  public let clientId: String
  private let correlationIds = CorrelationIdSource()

  public init(connection: FrameConnection, clientId: String = "streambus-raw") {
    self.connection = connection
    self.clientId = clientId
  }

  public static func connect(
    to address: String, clientId: String = "streambus-raw", requestTimeoutMs: Int64 = 30_000
  ) async throws -> RawBrokerClient {
    var configuration = FrameConnectionConfiguration()
    configuration.requestTimeoutMs = requestTimeoutMs
    var logger = Logger(label: "streambus.raw-client")
    logger.logLevel = .error
    let connection = try await FrameConnection.connect(
      to: try HostPort(parsing: address), configuration: configuration, logger: logger)
    return RawBrokerClient(connection: connection, clientId: clientId)
  }

  public func close() async {
    await connection.close()
  }

  /// Sends one request and decodes the response; a top-level error code is returned in the
  /// header, not thrown (tests look at it).
  public func send(_ request: Request) async throws -> (ResponseHeader, Response?) {
    let header = RequestHeader(
      apiKey: request.apiKey, apiVersion: 0, correlationId: correlationIds.next(),
      clientId: clientId)
    let payload = try await connection.send(request.encodePayload(header: header))
    return try Response.decode(apiKey: request.apiKey, version: 0, payload: payload)
  }

  /// Creates a topic; `TOPIC_ALREADY_EXISTS` counts as success.
  public func createTopic(
    _ name: String, partitions: Int32 = 1, replicationFactor: Int16 = -1
  ) async throws {
    let request = CreateTopicsRequest(
      topics: [
        .init(
          name: name, numPartitions: partitions, replicationFactor: replicationFactor,
          configs: [])
      ],
      timeoutMs: 10_000)
    let (header, response) = try await send(.createTopics(request))
    guard header.errorCode == .none else {
      throw HarnessError(
        "CreateTopics \(name): \(header.errorCode) \(header.errorMessage ?? "")")
    }
    guard case .createTopics(let body) = response, let topic = body.topics.first else {
      throw HarnessError(
        "CreateTopics \(name): unexpected response \(String(describing: response))")
    }
    guard topic.errorCode == .none || topic.errorCode == .topicAlreadyExists else {
      throw HarnessError(
        "CreateTopics \(name): \(topic.errorCode) \(topic.errorMessage ?? "")")
    }
  }

  /// Appends encoded batches to one partition and returns the partition result.
  public func produce(
    topic: String, partition: Int32 = 0, records: [UInt8], acks: Int16, timeoutMs: Int32 = 30_000
  ) async throws -> ProduceResponse.Partition {
    let request = ProduceRequest(
      acks: acks, timeoutMs: timeoutMs,
      topics: [.init(name: topic, partitions: [.init(partition: partition, records: records)])])
    let (header, response) = try await send(.produce(request))
    guard header.errorCode == .none else {
      throw HarnessError("Produce: \(header.errorCode) \(header.errorMessage ?? "")")
    }
    guard case .produce(let body) = response,
      let result = body.topics.first?.partitions.first
    else {
      throw HarnessError("Produce: unexpected response \(String(describing: response))")
    }
    return result
  }

  /// One fetch from `offset`; the partition result carries records, high watermark and error.
  public func fetch(
    topic: String, partition: Int32 = 0, offset: Int64, maxBytes: Int32 = 1 << 20,
    maxWaitMs: Int32 = 0
  ) async throws -> FetchResponse.Partition {
    let request = FetchRequest(
      maxWaitMs: maxWaitMs, minBytes: 1, maxBytes: maxBytes,
      topics: [
        .init(
          name: topic,
          partitions: [
            .init(partition: partition, fetchOffset: offset, partitionMaxBytes: maxBytes)
          ]
        )
      ])
    let (header, response) = try await send(.fetch(request))
    guard header.errorCode == .none else {
      throw HarnessError("Fetch: \(header.errorCode) \(header.errorMessage ?? "")")
    }
    guard case .fetch(let body) = response, let result = body.topics.first?.partitions.first
    else {
      throw HarnessError("Fetch: unexpected response \(String(describing: response))")
    }
    return result
  }

  /// Reads a partition from `offset` up to its high watermark and decodes every record.
  public func readAll(
    topic: String, partition: Int32 = 0, from offset: Int64 = 0, maxBytes: Int32 = 4 << 20
  ) async throws -> [Record] {
    var records: [Record] = []
    var next = offset
    while true {
      let result = try await fetch(
        topic: topic, partition: partition, offset: next, maxBytes: maxBytes)
      guard result.errorCode == .none else {
        throw HarnessError("Fetch at \(next): \(result.errorCode)")
      }
      let batch = try RecordBatches.decodeAll(result.records)
      for record in batch where record.offset >= next {
        records.append(record)
      }
      if let last = records.last, last.offset >= next {
        next = last.offset + 1
      }
      if next >= result.highWatermark { break }
      if batch.isEmpty {
        throw HarnessError(
          "Fetch at \(next) returned no complete batch below high watermark "
            + "\(result.highWatermark) (maxBytes \(maxBytes) too small?)")
      }
    }
    return records
  }
}

/// Helpers for building and reading record batches.
public enum RecordBatches {
  /// One uncompressed batch holding `values` (no keys), timestamps = now.
  public static func batch(values: [[UInt8]], timestampMs: Int64? = nil) -> [UInt8] {
    let timestamp = timestampMs ?? Int64(Date().timeIntervalSince1970 * 1000)
    var builder = RecordBatchBuilder()
    for value in values {
      builder.append(key: nil, value: value, timestamp: timestamp)
    }
    return builder.build()
  }

  /// Decodes every complete batch (CRC-checked); a cut-off tail is ignored, as in a fetch.
  public static func decodeAll(_ bytes: [UInt8]) throws -> [Record] {
    var records: [Record] = []
    try bytes.withUnsafeBytes { buffer in
      var scanner = RecordBatchScanner(buffer)
      while let span = try scanner.next() {
        let batch = try RecordBatch.decode(UnsafeRawBufferPointer(rebasing: buffer[span.range]))
        records.append(contentsOf: batch.records)
      }
    }
    return records
  }

  /// Counts records and record-batch bytes without decoding records (for throughput runs).
  public static func scanCounts(
    _ bytes: [UInt8]
  ) throws -> (records: Int, completeBytes: Int, lastOffset: Int64?) {
    var count = 0
    var completeBytes = 0
    var lastOffset: Int64?
    try bytes.withUnsafeBytes { buffer in
      var scanner = RecordBatchScanner(buffer, verifiesCRC: false)
      while let span = try scanner.next() {
        count += Int(span.header.recordCount)
        lastOffset = span.header.lastOffset
        completeBytes = span.range.upperBound
      }
    }
    return (count, completeBytes, lastOffset)
  }
}

/// Correlation ids unique per connection.
final class CorrelationIdSource: Sendable {
  private let value = NSLockedCounter()

  func next() -> Int32 { value.increment() }
}

final class NSLockedCounter: @unchecked Sendable {
  private let lock = NSLock()
  private var counter: Int32 = 0

  func increment() -> Int32 {
    lock.withLock {
      counter = counter == Int32.max ? 1 : counter + 1
      return counter
    }
  }
}
