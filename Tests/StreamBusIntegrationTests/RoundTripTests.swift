import Foundation
import StreamBusClient
import StreamBusTestSupport
import StreamBusTransport
import Testing

/// 100k records through a real broker and back, via the CLI and via the client library.
@Suite(.timeLimit(.minutes(3)))
struct EndToEndRoundTripTests {
  static let recordCount = 100_000

  /// Line `index` of the produce input: mostly plain, some with the characters JSON output
  /// must escape and multi-byte UTF-8, and a few empty lines.
  static func line(_ index: Int) -> String {
    switch index % 1000 {
    case 7: return "quote \" backslash \\ tab \t slash / \(index)"
    case 13: return "unicode é ß 漢字 🚀 \(index)"
    case 21: return ""
    case 42: return String(repeating: "x", count: 900) + "\(index)"
    default: return "line-\(index)"
    }
  }

  @Test func sbctlProduceThenConsumeJSONLinesIsByteIdentical() async throws {
    try await ProcessHarness.run { harness in
      let broker = try await harness.startBroker()
      let brokers = ["--brokers", broker.address]
      try await harness.run(
        executableNamed: "sbctl",
        arguments: ["topic", "create", "lines", "--partitions", "1"] + brokers
      ).checkSuccess()

      let lines = (0..<Self.recordCount).map(Self.line)
      let input = harness.rootDirectory.appendingPathComponent("input.txt")
      try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: input)
      try await harness.run(
        executableNamed: "sbctl", arguments: ["produce", "lines", "--acks", "all"] + brokers,
        stdin: input, timeoutMs: 120_000
      ).checkSuccess()

      let consumed = try await harness.run(
        executableNamed: "sbctl",
        arguments: [
          "consume", "lines", "--from", "beginning", "--count", "\(Self.recordCount)",
          "--output", "jsonl", "--timeout-ms", "10000",
        ] + brokers, timeoutMs: 120_000
      ).checkSuccess()

      let outputLines = consumed.stdout.split(separator: UInt8(ascii: "\n"))
      try #require(
        outputLines.count == Self.recordCount,
        "consumed \(outputLines.count) lines, expected \(Self.recordCount)")
      var mismatches = 0
      for (index, jsonLine) in outputLines.enumerated() {
        let object = try #require(
          try JSONSerialization.jsonObject(with: Data(jsonLine)) as? [String: Any])
        let offset = (object["offset"] as? NSNumber)?.int64Value
        let value = object["value"] as? String
        if offset != Int64(index) || value.map({ Array($0.utf8) }) != Array(lines[index].utf8)
          || object["valueBase64"] != nil
        {
          mismatches += 1
          if mismatches <= 5 {
            let found = "offset \(String(describing: offset)), value \(String(describing: value))"
            Issue.record(
              Comment(
                rawValue: "record \(index): \(found), expected \(lines[index].debugDescription)"))
          }
        }
      }
      #expect(mismatches == 0)
    }
  }

  @Test func clientLibraryProduceAcksAllThenConsumeIsIdentical() async throws {
    try await ProcessHarness.run { harness in
      let broker = try await harness.startBroker()
      var config = ClientConfig(
        bootstrapBrokers: [try HostPort(parsing: broker.address)], clientId: "integration")
      config.requestTimeoutMs = 30_000
      let admin = Admin(config: config)
      try await admin.createTopic("library", partitions: 1)
      await admin.close()

      let values = (0..<Self.recordCount).map { index in
        Array(Self.line(index).utf8) + [UInt8(truncatingIfNeeded: index)]
      }
      let producer = Producer(config: config, producerConfig: ProducerConfig(acks: .all))
      var handles: [DeliveryHandle] = []
      handles.reserveCapacity(values.count)
      for value in values {
        handles.append(try await producer.enqueue(topic: "library", value: value, partition: 0))
      }
      var acknowledgedOffsets: [Int64] = []
      acknowledgedOffsets.reserveCapacity(values.count)
      for handle in handles {
        acknowledgedOffsets.append(try await handle.value().offset)
      }
      await producer.close()
      #expect(acknowledgedOffsets == Array(0..<Int64(values.count)))

      let consumer = Consumer(config: config)
      let partition = TopicPartition(topic: "library", partition: 0)
      await consumer.assign([partition])
      try await consumer.seek(partition, to: .earliest)
      var consumed: [ConsumerRecord] = []
      let deadline = ContinuousClock.now + .seconds(60)
      while consumed.count < values.count && ContinuousClock.now < deadline {
        consumed.append(contentsOf: try await consumer.poll(maxWaitMs: 500))
      }
      await consumer.close()
      try #require(consumed.count == values.count, "consumed \(consumed.count) records")
      #expect(consumed.map(\.offset) == Array(0..<Int64(values.count)))
      let mismatched = zip(consumed, values).enumerated().filter {
        $0.element.0.value != $0.element.1
      }
      #expect(
        mismatched.isEmpty,
        "\(mismatched.count) values differ, first at \(mismatched.first?.offset ?? -1)")
    }
  }
}
