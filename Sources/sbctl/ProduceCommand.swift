import ArgumentParser
import StreamBusClient

struct ProduceCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "produce",
    abstract: "Produce one record per stdin line.",
    discussion: """
      With --key-delimiter C the part of a line before the first C is the key and the rest \
      the value; a line without C has no key. Records are batched and pipelined through the \
      producer. Exit code 1 when any record failed (each failure is reported on stderr with \
      its line number).
      """)

  @Argument(help: "Topic to produce to.") var topic: String
  @Option(help: "Send every record to this partition (default: by key, sticky without key).")
  var partition: Int32?
  @Option(help: "Split each line into key and value at the first occurrence of this string.")
  var keyDelimiter: String?
  @Option(help: "Acknowledgements: 0, 1 or all.") var acks: String = "all"
  @Option(help: "How long a batch waits for more records.") var lingerMs: Int64 = 5
  @OptionGroup var common: CommonOptions

  /// Failed records reported one by one on stderr before the rest are only counted.
  static let reportedFailuresMax = 100

  func validate() throws {
    guard ProducerConfig.Acks(parsing: acks) != nil else {
      throw ValidationError("--acks must be 0, 1 or all, got \"\(acks)\"")
    }
    if let keyDelimiter, keyDelimiter.isEmpty {
      throw ValidationError("--key-delimiter must not be empty")
    }
    if let partition, partition < 0 {
      throw ValidationError("--partition must be at least 0")
    }
    guard lingerMs >= 0 else { throw ValidationError("--linger-ms must be at least 0") }
  }

  func run() async throws {
    let console = Console.standard()
    try await runReportingErrors(console: console) {
      let reader = ByteLineReader(descriptor: 0)
      return try await execute(
        console: console, config: common.clientConfig(), readLine: { reader.nextLine() })
    }
  }

  /// Splits at the first occurrence of the key delimiter; without one the line is the value.
  func splitLine(_ line: [UInt8]) -> (key: [UInt8]?, value: [UInt8]) {
    guard let keyDelimiter else { return (nil, line) }
    let delimiter = Array(keyDelimiter.utf8)
    guard line.count >= delimiter.count else { return (nil, line) }
    for start in 0...(line.count - delimiter.count)
    where line[start] == delimiter[0]
      && line[start..<start + delimiter.count].elementsEqual(delimiter)
    {
      return (Array(line[..<start]), Array(line[(start + delimiter.count)...]))
    }
    return (nil, line)
  }

  private enum Outcome: Sendable {
    case queued(line: Int, handle: DeliveryHandle, key: [UInt8]?, value: [UInt8])
    case failed(line: Int, error: StreamBusError)
  }

  private struct Tally: Sendable {
    var acknowledged = 0
    var failed = 0
  }

  func execute(
    console: Console, config: ClientConfig, readLine: () -> [UInt8]?
  ) async throws -> Int32 {
    var producerConfig = ProducerConfig(acks: ProducerConfig.Acks(parsing: acks) ?? .all)
    producerConfig.lingerMs = lingerMs
    let producer = Producer(config: config, producerConfig: producerConfig)
    let (outcomes, sink) = AsyncStream.makeStream(of: Outcome.self)
    let output = common.output
    let topic = topic
    // Acknowledgements are reported in line order while later lines are still being queued.
    let reporter = Task { () -> Tally in
      var tally = Tally()
      for await outcome in outcomes {
        switch outcome {
        case .queued(let line, let handle, let key, let value):
          switch await handle.result() {
          case .success(let metadata):
            tally.acknowledged += 1
            if output == .jsonl {
              console.line(
                JSONValue.object(
                  [
                    ("topic", .string(metadata.topic)),
                    ("partition", .integer(Int64(metadata.partition))),
                    ("offset", .integer(metadata.offset)),
                  ] + bytesFields("key", key) + bytesFields("value", value)
                ).rendered())
            }
          case .failure(let error):
            tally.failed += 1
            Self.reportFailure(line: line, error: error, tally: tally, console: console)
          }
        case .failed(let line, let error):
          tally.failed += 1
          Self.reportFailure(line: line, error: error, tally: tally, console: console)
        }
      }
      return tally
    }
    var lineNumber = 0
    var fatalError: StreamBusError?
    while let line = readLine() {
      lineNumber += 1
      let (key, value) = splitLine(line)
      do {
        let handle = try await producer.enqueue(
          topic: topic, key: key, value: value, partition: partition)
        sink.yield(.queued(line: lineNumber, handle: handle, key: key, value: value))
      } catch let error as StreamBusError {
        sink.yield(.failed(line: lineNumber, error: error))
        if error.errorCode != .messageTooLarge {
          // Not about this record (unknown topic, unreachable cluster): later lines would
          // fail the same way, so stop reading.
          fatalError = error
          break
        }
      }
    }
    sink.finish()
    await producer.close()
    let tally = await reporter.value
    if tally.failed > Self.reportedFailuresMax {
      console.errorLine(
        "sbctl: \(tally.failed - Self.reportedFailuresMax) more records failed (not listed)")
    }
    switch output {
    case .table:
      console.line(
        "Produced \(tally.acknowledged) records to \(topic)"
          + (tally.failed > 0 ? " (\(tally.failed) failed)" : ""))
    case .json:
      console.line(
        JSONValue.object([
          ("topic", .string(topic)), ("produced", .integer(Int64(tally.acknowledged))),
          ("failed", .integer(Int64(tally.failed))),
        ]).rendered())
    case .jsonl:
      break
    }
    if let fatalError {
      console.errorLine("sbctl: stopped reading input at line \(lineNumber)")
      return ExitStatus.code(for: fatalError)
    }
    return tally.failed > 0 ? ExitStatus.requestFailed : ExitStatus.success
  }

  private static func reportFailure(
    line: Int, error: StreamBusError, tally: Tally, console: Console
  ) {
    if tally.failed <= reportedFailuresMax {
      console.errorLine("sbctl: error: line \(line): \(error)")
    }
  }
}
