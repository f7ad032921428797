import ArgumentParser
import Foundation
import StreamBusProtocol
import StreamBusTestSupport

enum AcksOption: String, ExpressibleByArgument, CaseIterable, Sendable {
  case none = "0"
  case leader = "1"
  case all

  var wireValue: Int16 {
    switch self {
    case .none: return 0
    case .leader: return 1
    case .all: return -1
    }
  }
}

struct ProduceCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "produce",
    abstract: "Producer throughput (as fast as possible) or latency (at a fixed --rate).",
    discussion: """
      Throughput runs keep --connections x --inflight requests of --batch-records records in \
      flight. With --rate the records are sent on a fixed schedule and each latency is \
      measured from the scheduled send time, so a stalled broker cannot hide its delay \
      (no coordinated omission).
      """)

  @OptionGroup var broker: BrokerOptions

  @Option(help: "client (StreamBusClient Producer) or raw (pre-encoded batches, broker only).")
  var driver: DriverOption = .client

  @Option(help: "Value bytes per record.")
  var recordBytes: Int = 1024

  @Option(help: "Acknowledgement: 1 (leader appended) or all (durable).")
  var acks: AcksOption = .all

  @Option(help: "Records to send (default 200000 unless --duration-s is given).")
  var records: Int?

  @Option(help: "Run for this many seconds instead of a record count.")
  var durationS: Double?

  @Option(help: "Fixed send rate in records/s for latency runs.")
  var rate: Int?

  @Option(help: "raw: TCP connections.")
  var connections: Int = 4

  @Option(help: "raw: requests in flight per connection; client: producer inflightRequestsMax.")
  var inflight: Int = 8

  @Option(help: "raw: records per produce request (default: ~64 KiB per batch, 1 with --rate).")
  var batchRecords: Int?

  @Option(help: "client: producer lingerMs.")
  var lingerMs: Int64 = 5

  @Option(help: "client: producer batchBytes.")
  var batchBytes: Int = 64 << 10

  @Option(help: "client: producer bufferBytesMax (bounds what is enqueued and not acknowledged).")
  var bufferBytes: Int = 32 << 20

  @Option(help: "Request timeout for acks=all.")
  var timeoutMs: Int32 = 30_000

  @Option(help: "text or json (one JSON object per result).")
  var output: OutputFormat = .text

  func validate() throws {
    guard (1...(16 << 20)).contains(recordBytes) else {
      throw ValidationError("--record-bytes must be in 1...16777216")
    }
    guard acks != .none else {
      throw ValidationError("acks=0 is not measured: there is nothing to time")
    }
    guard connections >= 1, inflight >= 1 else {
      throw ValidationError("--connections and --inflight must be at least 1")
    }
    if let rate, rate < 1 { throw ValidationError("--rate must be positive") }
    if let batchRecords, batchRecords < 1 {
      throw ValidationError("--batch-records must be at least 1")
    }
    if records != nil && durationS != nil {
      throw ValidationError("give --records or --duration-s, not both")
    }
  }

  var effectiveBatchRecords: Int {
    if let batchRecords { return batchRecords }
    if rate != nil { return 1 }
    return max(1, (64 << 10) / recordBytes)
  }

  func run() async throws {
    try await BrokerTarget.with(broker) { target in
      let topic = broker.topic ?? uniqueTopicName(prefix: "sbbench-produce")
      let admin = try await RawBrokerClient.connect(to: target.address, clientId: "sbbench")
      try await admin.createTopic(
        topic, partitions: broker.partitions, replicationFactor: broker.replicationFactor)
      await admin.close()
      let result: BenchResult
      switch driver {
      case .raw: result = try await produce(address: target.address, topic: topic)
      case .client: result = try await produceWithClient(address: target.address, topic: topic)
      }
      result.print(format: output)
    }
  }

  func produceWithClient(address: String, topic: String) async throws -> BenchResult {
    let budget = WorkBudget(
      records: durationS == nil ? (records ?? 200_000) : nil,
      deadline: durationS.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) })
    let run = ClientProduceRun(
      address: address, topic: topic, recordBytes: recordBytes,
      acks: acks == .all ? .all : .leader, lingerMs: lingerMs, batchBytes: batchBytes,
      inflightRequestsMax: inflight, bufferBytesMax: bufferBytes, rate: rate, budget: budget)
    let start = ContinuousClock.now
    let outcome = try await run.run()
    let elapsed = (ContinuousClock.now - start).secondsDouble
    var parameters: [String: String] = [
      "recordBytes": "\(recordBytes)", "acks": acks.rawValue, "driver": "client",
      "lingerMs": "\(lingerMs)", "batchBytes": "\(batchBytes)", "inflight": "\(inflight)",
      "partitions": "\(broker.partitions)", "bufferBytes": "\(bufferBytes)",
    ]
    if let rate { parameters["rate"] = "\(rate)" }
    return result(
      outcome, parameters: parameters, elapsed: elapsed,
      benchmark: rate == nil ? "produce.throughput" : "produce.latency")
  }

  func result(
    _ outcome: LaneOutcome, parameters: [String: String], elapsed: Double, benchmark: String
  ) -> BenchResult {
    var result = BenchResult(benchmark: benchmark, parameters: parameters, elapsedSeconds: elapsed)
    result.records = outcome.records
    result.bytes = outcome.records * recordBytes
    result.recordsPerSecond = rounded(Double(outcome.records) / elapsed)
    result.mbPerSecond = rounded(
      megabytesPerSecond(bytes: outcome.records * recordBytes, seconds: elapsed))
    result.latency = outcome.latencies.summary
    result.errors = outcome.errors
    if let firstError = outcome.firstError { result.notes = "first error: \(firstError)" }
    return result
  }

  func produce(address: String, topic: String) async throws -> BenchResult {
    var clients: [RawBrokerClient] = []
    for index in 0..<connections {
      clients.append(
        try await RawBrokerClient.connect(
          to: address, clientId: "sbbench-\(index)", requestTimeoutMs: Int64(timeoutMs) + 5_000))
    }
    let batchRecords = effectiveBatchRecords
    let budget = WorkBudget(
      records: durationS == nil ? (records ?? 200_000) : nil,
      deadline: durationS.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) })
    let template = BatchTemplate(recordBytes: recordBytes)
    let partitions = broker.partitions
    let acks = acks.wireValue
    let timeoutMs = timeoutMs
    let rate = rate
    let inflight = inflight
    let connections = connections

    let start = ContinuousClock.now
    // Lanes never throw (errors are counted), so the connections are always closed below.
    let outcomes = try await withThrowingTaskGroup(of: LaneOutcome.self) { group in
      for (index, client) in clients.enumerated() {
        let partition = Int32(index) % partitions
        if let rate {
          let perConnectionRate = Double(rate) / Double(connections)
          group.addTask {
            try await scheduledLane(
              client: client, topic: topic, partition: partition, acks: acks,
              timeoutMs: timeoutMs, template: template, batchRecords: batchRecords,
              recordsPerSecond: perConnectionRate, inflight: inflight, budget: budget)
          }
        } else {
          for _ in 0..<inflight {
            group.addTask {
              try await closedLoopLane(
                client: client, topic: topic, partition: partition, acks: acks,
                timeoutMs: timeoutMs, template: template, batchRecords: batchRecords,
                budget: budget)
            }
          }
        }
      }
      var total = LaneOutcome()
      for try await outcome in group { total.add(outcome) }
      return total
    }
    let elapsed = (ContinuousClock.now - start).secondsDouble
    for client in clients { await client.close() }

    var parameters: [String: String] = [
      "recordBytes": "\(recordBytes)", "acks": acks == -1 ? "all" : "\(acks)",
      "connections": "\(connections)", "inflight": "\(inflight)",
      "batchRecords": "\(batchRecords)", "partitions": "\(partitions)", "driver": "raw",
    ]
    if let rate { parameters["rate"] = "\(rate)" }
    return result(
      outcomes, parameters: parameters, elapsed: elapsed,
      benchmark: rate == nil ? "produce.throughput" : "produce.latency")
  }
}

/// Pre-encoded batches: the raw driver resends the same bytes (the broker assigns offsets),
/// so the client side costs almost nothing and the measurement is the broker's.
final class BatchTemplate: @unchecked Sendable {
  let recordBytes: Int
  private let lock = NSLock()
  private var batches: [Int: [UInt8]] = [:]

  init(recordBytes: Int) {
    self.recordBytes = recordBytes
  }

  func batch(records: Int) -> [UInt8] {
    lock.withLock {
      if let cached = batches[records] { return cached }
      let values = (0..<records).map { recordValue(bytes: recordBytes, seed: $0) }
      let encoded = RecordBatches.batch(values: values)
      batches[records] = encoded
      return encoded
    }
  }
}

/// Shared stop condition: a record count or a deadline.
final class WorkBudget: @unchecked Sendable {
  private let lock = NSLock()
  private var remaining: Int?
  private let deadline: ContinuousClock.Instant?
  private var stopped = false

  init(records: Int?, deadline: ContinuousClock.Instant?) {
    self.remaining = records
    self.deadline = deadline
  }

  /// Grants up to `wanted` records, 0 when the run is over.
  func claim(_ wanted: Int) -> Int {
    lock.withLock {
      if stopped { return 0 }
      if let deadline, ContinuousClock.now >= deadline { return 0 }
      guard let left = remaining else { return wanted }
      let granted = min(wanted, left)
      remaining = left - granted
      return granted
    }
  }

  func stop() {
    lock.withLock { stopped = true }
  }
}

struct LaneOutcome: Sendable {
  var records = 0
  var errors = 0
  var firstError: String?
  var latencies = LatencyRecorder()

  mutating func add(_ other: LaneOutcome) {
    records += other.records
    errors += other.errors
    firstError = firstError ?? other.firstError
    latencies.add(other.latencies)
  }
}

let laneErrorsMax = 100

/// One request at a time, as fast as acks come back.
func closedLoopLane(
  client: RawBrokerClient, topic: String, partition: Int32, acks: Int16, timeoutMs: Int32,
  template: BatchTemplate, batchRecords: Int, budget: WorkBudget
) async throws -> LaneOutcome {
  var outcome = LaneOutcome()
  while true {
    let count = budget.claim(batchRecords)
    if count == 0 { break }
    let batch = template.batch(records: count)
    let sent = ContinuousClock.now
    do {
      let result = try await client.produce(
        topic: topic, partition: partition, records: batch, acks: acks, timeoutMs: timeoutMs)
      outcome.latencies.record(ContinuousClock.now - sent)
      if result.errorCode == .none {
        outcome.records += count
      } else {
        outcome.errors += 1
        outcome.firstError =
          outcome.firstError ?? "\(result.errorCode) \(result.errorMessage ?? "")"
      }
    } catch {
      outcome.errors += 1
      outcome.firstError = outcome.firstError ?? "\(error)"
    }
    if outcome.errors >= laneErrorsMax {
      budget.stop()
      break
    }
  }
  return outcome
}

/// Sends on a fixed schedule; latency counts from the scheduled time.
func scheduledLane(
  client: RawBrokerClient, topic: String, partition: Int32, acks: Int16, timeoutMs: Int32,
  template: BatchTemplate, batchRecords: Int, recordsPerSecond: Double, inflight: Int,
  budget: WorkBudget
) async throws -> LaneOutcome {
  let intervalNanoseconds = Double(batchRecords) / recordsPerSecond * 1e9
  let start = ContinuousClock.now
  return try await withThrowingTaskGroup(of: LaneOutcome.self) { group in
    var total = LaneOutcome()
    var running = 0
    var sequence = 0
    while true {
      let intended = start + .nanoseconds(Int64(Double(sequence) * intervalNanoseconds))
      sequence += 1
      if intended > ContinuousClock.now {
        try await Task.sleep(until: intended, clock: .continuous)
      }
      let count = budget.claim(batchRecords)
      if count == 0 { break }
      if running >= inflight, let finished = try await group.next() {
        total.add(finished)
        running -= 1
      }
      let batch = template.batch(records: count)
      running += 1
      group.addTask {
        var outcome = LaneOutcome()
        do {
          let result = try await client.produce(
            topic: topic, partition: partition, records: batch, acks: acks, timeoutMs: timeoutMs)
          outcome.latencies.record(ContinuousClock.now - intended)
          if result.errorCode == .none {
            outcome.records = count
          } else {
            outcome.errors = 1
            outcome.firstError = "\(result.errorCode) \(result.errorMessage ?? "")"
          }
        } catch {
          outcome.errors = 1
          outcome.firstError = "\(error)"
        }
        return outcome
      }
      if total.errors >= laneErrorsMax {
        budget.stop()
        break
      }
    }
    for try await finished in group { total.add(finished) }
    return total
  }
}
