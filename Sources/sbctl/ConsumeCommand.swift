import ArgumentParser
import StreamBusClient

/// `--from`: where consumption starts.
enum StartPosition: Equatable, Sendable, ExpressibleByArgument {
  case beginning
  case end
  case offset(Int64)

  init?(argument: String) {
    switch argument {
    case "beginning": self = .beginning
    case "end": self = .end
    default:
      guard let offset = Int64(argument), offset >= 0 else { return nil }
      self = .offset(offset)
    }
  }

  var seekPosition: SeekPosition {
    switch self {
    case .beginning: return .earliest
    case .end: return .latest
    case .offset(let offset): return .offset(offset)
    }
  }
}

struct ConsumeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "consume",
    abstract: "Print records from a topic.",
    discussion: """
      Reads every partition (or only --partition) from --from, and stops after --count \
      records or when no record arrived for --timeout-ms. Keys and values are printed as \
      UTF-8 text; bytes that are not valid UTF-8 are printed as null plus a keyBase64 / \
      valueBase64 field (json, jsonl) or as base64:... (table).
      """)

  @Argument(help: "Topic to consume.") var topic: String
  @Option(help: "Only this partition (default: all partitions).") var partition: Int32?
  @Option(help: "Start at: beginning, end, or an offset (per partition).")
  var from: StartPosition = .beginning
  @Option(help: "Stop after this many records.") var count: Int?
  @Option(help: "Stop when no record arrived for this long.") var timeoutMs: Int64 = 10_000
  @OptionGroup var common: CommonOptions

  /// Upper bound on one long poll, so the idle timeout is checked regularly.
  static let pollWaitMsMax: Int64 = 1_000

  func validate() throws {
    if let count, count < 0 { throw ValidationError("--count must be at least 0") }
    guard timeoutMs >= 0 else { throw ValidationError("--timeout-ms must be at least 0") }
    if let partition, partition < 0 {
      throw ValidationError("--partition must be at least 0")
    }
  }

  func run() async throws {
    let console = Console.standard()
    try await runReportingErrors(console: console) {
      try await execute(console: console, config: common.clientConfig())
    }
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    let consumer = Consumer(config: config)
    do {
      let status = try await consume(with: consumer, console: console)
      await consumer.close()
      return status
    } catch {
      await consumer.close()
      throw error
    }
  }

  private func consume(with consumer: Consumer, console: Console) async throws -> Int32 {
    let all = try await consumer.partitions(of: topic)
    let partitions: [TopicPartition]
    if let partition {
      guard all.contains(TopicPartition(topic: topic, partition: partition)) else {
        throw StreamBusError(
          .invalidArgument, errorCode: .unknownTopicOrPartition,
          "partition \(partition) does not exist (topic has \(all.count) partitions)",
          topic: topic, partition: partition)
      }
      partitions = [TopicPartition(topic: topic, partition: partition)]
    } else {
      partitions = all
    }
    await consumer.assign(partitions)
    try await consumer.seekAll(to: from.seekPosition)
    let limit = count ?? Int.max
    var printed = 0
    var collected: [JSONValue] = []
    var lastRecordAt = ContinuousClock.now
    if common.output == .table {
      console.line(renderTable([Self.tableHeader]).joined())
    }
    while printed < limit {
      let idleMs =
        (ContinuousClock.now - lastRecordAt).components.seconds * 1000
        + (ContinuousClock.now - lastRecordAt).components.attoseconds / 1_000_000_000_000_000
      let remainingMs = timeoutMs - idleMs
      if remainingMs <= 0 { break }
      let records = try await consumer.poll(maxWaitMs: min(remainingMs, Self.pollWaitMsMax))
      for record in records.prefix(limit - printed) {
        printed += 1
        switch common.output {
        case .jsonl: console.line(Self.recordJSON(record).rendered())
        case .json: collected.append(Self.recordJSON(record))
        case .table: console.line(Self.tableRow(record))
        }
      }
      console.flush()
      if !records.isEmpty {
        // Idle time counts from when the records were handled, not from when they arrived:
        // printing a large poll must not use up the timeout.
        lastRecordAt = .now
      }
    }
    if common.output == .json {
      console.line(JSONValue.array(collected).rendered())
    }
    return ExitStatus.success
  }

  static let tableHeader = ["PARTITION", "OFFSET", "TIMESTAMP", "KEY", "VALUE"]

  static func tableRow(_ record: ConsumerRecord) -> String {
    [
      String(record.partition), String(record.offset), String(record.timestamp),
      bytesCell(record.key), bytesCell(record.value),
    ].joined(separator: "\t")
  }

  /// `{"topic","partition","offset","timestamp","key","value"}` (+ keyBase64/valueBase64).
  static func recordJSON(_ record: ConsumerRecord) -> JSONValue {
    .object(
      [
        ("topic", .string(record.topic)), ("partition", .integer(Int64(record.partition))),
        ("offset", .integer(record.offset)), ("timestamp", .integer(record.timestamp)),
      ] + bytesFields("key", record.key) + bytesFields("value", record.value))
  }
}
