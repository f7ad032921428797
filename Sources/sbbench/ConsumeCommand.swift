import ArgumentParser
import Foundation
import StreamBusProtocol
import StreamBusTestSupport

struct ConsumeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "consume",
    abstract: "Consumer throughput from a pre-filled topic (served from the page cache).",
    discussion: """
      Fills the topic with --records records (acks=all, large batches) unless --skip-fill, \
      then reads every partition from offset 0 to its end --passes times. The data was just \
      written, so it is read from the page cache: this measures the broker's read path and \
      the network stack, not the disk.
      """)

  @OptionGroup var broker: BrokerOptions

  @Option(help: "client (StreamBusClient Consumer) or raw (one fetch loop per partition).")
  var driver: DriverOption = .client

  @Option(help: "Value bytes per record.")
  var recordBytes: Int = 1024

  @Option(help: "Records to fill the topic with.")
  var records: Int = 1_000_000

  @Flag(help: "Read an existing --topic as it is.")
  var skipFill = false

  @Option(help: "maxBytes per fetch request.")
  var fetchMaxBytes: Int32 = 8 << 20

  @Option(help: "How many times to read the topic (one result per pass).")
  var passes: Int = 3

  @Flag(help: "Verify each batch's CRC-32C on the consumer (costs client CPU).")
  var verifyCRC = false

  @Option(help: "text or json (one JSON object per result).")
  var output: OutputFormat = .text

  func validate() throws {
    guard recordBytes >= 1, records >= 1, passes >= 1 else {
      throw ValidationError("--record-bytes, --records and --passes must be positive")
    }
    guard fetchMaxBytes >= 64 << 10 else {
      throw ValidationError("--fetch-max-bytes must be at least 65536")
    }
    if skipFill && broker.topic == nil {
      throw ValidationError("--skip-fill needs --topic")
    }
  }

  func run() async throws {
    try await BrokerTarget.with(broker) { target in
      let topic = broker.topic ?? uniqueTopicName(prefix: "sbbench-consume")
      if !skipFill {
        let fill = try await self.fill(address: target.address, topic: topic)
        fill.print(format: output)
      }
      for pass in 1...passes {
        let result: BenchResult
        switch driver {
        case .raw: result = try await consume(address: target.address, topic: topic, pass: pass)
        case .client:
          result = try await consumeClient(address: target.address, topic: topic, pass: pass)
        }
        result.print(format: output)
      }
    }
  }

  /// Fills with acks=all so the whole topic is below the high watermark before reading.
  func fill(address: String, topic: String) async throws -> BenchResult {
    let admin = try await RawBrokerClient.connect(to: address, clientId: "sbbench-fill")
    try await admin.createTopic(
      topic, partitions: broker.partitions, replicationFactor: broker.replicationFactor)
    await admin.close()
    // Below the broker's default message-max-bytes (1 MiB per partition per request).
    let batchRecords = max(1, (512 << 10) / recordBytes)
    let template = BatchTemplate(recordBytes: recordBytes)
    let budget = WorkBudget(records: records, deadline: nil)
    let partitions = broker.partitions
    let start = ContinuousClock.now
    let connectionsCount = max(Int(partitions), 2)
    var clients: [RawBrokerClient] = []
    for index in 0..<connectionsCount {
      clients.append(
        try await RawBrokerClient.connect(to: address, clientId: "sbbench-fill-\(index)"))
    }
    let outcome = try await withThrowingTaskGroup(of: LaneOutcome.self) { group in
      for (index, client) in clients.enumerated() {
        for _ in 0..<4 {
          group.addTask {
            try await closedLoopLane(
              client: client, topic: topic, partition: Int32(index) % partitions, acks: -1,
              timeoutMs: 60_000, template: template, batchRecords: batchRecords, budget: budget)
          }
        }
      }
      var total = LaneOutcome()
      for try await lane in group { total.add(lane) }
      return total
    }
    for client in clients { await client.close() }
    guard outcome.errors == 0 else {
      throw ValidationError(
        "filling \(topic) failed: \(outcome.errors) errors, first: \(outcome.firstError ?? "?")")
    }
    let elapsed = (ContinuousClock.now - start).secondsDouble
    var result = BenchResult(
      benchmark: "consume.fill",
      parameters: ["recordBytes": "\(recordBytes)", "partitions": "\(partitions)"],
      elapsedSeconds: elapsed)
    result.records = outcome.records
    result.recordsPerSecond = rounded(Double(outcome.records) / elapsed)
    result.mbPerSecond = rounded(
      megabytesPerSecond(bytes: outcome.records * recordBytes, seconds: elapsed))
    return result
  }

  func consumeClient(address: String, topic: String, pass: Int) async throws -> BenchResult {
    let start = ContinuousClock.now
    let totals = try await consumeWithClient(
      address: address, topic: topic, expectedRecords: skipFill ? nil : records,
      recordBytes: recordBytes)
    let elapsed = (ContinuousClock.now - start).secondsDouble
    var result = BenchResult(
      benchmark: "consume.throughput",
      parameters: [
        "recordBytes": "\(recordBytes)", "partitions": "\(broker.partitions)", "pass": "\(pass)",
        "driver": "client",
      ],
      elapsedSeconds: elapsed)
    result.records = totals.records
    result.bytes = totals.payloadBytes
    result.recordsPerSecond = rounded(Double(totals.records) / elapsed)
    // Record values delivered to the application (the client decodes every record).
    result.mbPerSecond = rounded(megabytesPerSecond(bytes: totals.payloadBytes, seconds: elapsed))
    result.notes = "\(totals.polls) polls"
    return result
  }

  func consume(address: String, topic: String, pass: Int) async throws -> BenchResult {
    let partitions = broker.partitions
    let fetchMaxBytes = fetchMaxBytes
    let verifyCRC = verifyCRC
    var clients: [RawBrokerClient] = []
    for partition in 0..<partitions {
      clients.append(
        try await RawBrokerClient.connect(to: address, clientId: "sbbench-consume-\(partition)"))
    }
    let start = ContinuousClock.now
    let totals = try await withThrowingTaskGroup(of: PartitionReadOutcome.self) { group in
      for (index, client) in clients.enumerated() {
        group.addTask {
          try await readPartition(
            client: client, topic: topic, partition: Int32(index), fetchMaxBytes: fetchMaxBytes,
            verifyCRC: verifyCRC)
        }
      }
      var total = PartitionReadOutcome()
      for try await outcome in group { total.add(outcome) }
      return total
    }
    let elapsed = (ContinuousClock.now - start).secondsDouble
    for client in clients { await client.close() }
    var result = BenchResult(
      benchmark: "consume.throughput",
      parameters: [
        "recordBytes": "\(recordBytes)", "partitions": "\(partitions)", "pass": "\(pass)",
        "fetchMaxBytes": "\(fetchMaxBytes)", "verifyCRC": "\(verifyCRC)", "driver": "raw",
      ],
      elapsedSeconds: elapsed)
    result.records = totals.records
    result.bytes = totals.batchBytes
    result.recordsPerSecond = rounded(Double(totals.records) / elapsed)
    // Batch bytes on the wire (records plus their ~70-byte batch and record framing).
    result.mbPerSecond = rounded(megabytesPerSecond(bytes: totals.batchBytes, seconds: elapsed))
    result.latency = totals.latencies.summary
    result.notes = String(
      format: "%d fetches; payload %.1f MB/s", totals.fetches,
      megabytesPerSecond(bytes: totals.records * recordBytes, seconds: elapsed))
    return result
  }
}

struct PartitionReadOutcome: Sendable {
  var records = 0
  var batchBytes = 0
  var fetches = 0
  var latencies = LatencyRecorder()

  mutating func add(_ other: PartitionReadOutcome) {
    records += other.records
    batchBytes += other.batchBytes
    fetches += other.fetches
    latencies.add(other.latencies)
  }
}

/// Reads one partition from offset 0 to the high watermark seen by the first fetch.
func readPartition(
  client: RawBrokerClient, topic: String, partition: Int32, fetchMaxBytes: Int32, verifyCRC: Bool
) async throws -> PartitionReadOutcome {
  var outcome = PartitionReadOutcome()
  var offset: Int64 = 0
  var endOffset: Int64?
  while endOffset.map({ offset < $0 }) ?? true {
    let sent = ContinuousClock.now
    let result = try await client.fetch(
      topic: topic, partition: partition, offset: offset, maxBytes: fetchMaxBytes)
    outcome.latencies.record(ContinuousClock.now - sent)
    outcome.fetches += 1
    guard result.errorCode == .none else {
      throw ValidationError("fetch \(topic)/\(partition) at \(offset): \(result.errorCode)")
    }
    if endOffset == nil { endOffset = result.highWatermark }
    let scanned = try RecordBatches.scanCounts(result.records)
    if verifyCRC {
      _ = try RecordBatches.decodeAll(result.records)
    }
    guard let lastOffset = scanned.lastOffset else {
      if offset >= result.highWatermark { break }
      throw ValidationError(
        "fetch \(topic)/\(partition) at \(offset) returned no complete batch below the high "
          + "watermark \(result.highWatermark); raise --fetch-max-bytes")
    }
    outcome.records += scanned.records
    outcome.batchBytes += scanned.completeBytes
    offset = lastOffset + 1
  }
  return outcome
}
