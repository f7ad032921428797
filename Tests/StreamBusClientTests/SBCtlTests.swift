import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import StreamBusClient
@testable import sbctl

/// Lines served to `ProduceCommand.execute` in place of stdin.
private func lineSource(_ lines: [String]) -> @Sendable () -> [UInt8]? {
  let remaining = NIOLockedValueBox(lines.map { Array($0.utf8) }[...])
  return { remaining.withLockedValue { $0.popFirst() } }
}

/// Parses a JSON line into a dictionary, keeping the raw text to check field order.
private func object(_ line: String) throws -> [String: Any] {
  let value = try JSONSerialization.jsonObject(with: Data(line.utf8))
  return try #require(value as? [String: Any])
}

private func fieldOrder(_ line: String, _ fields: [String]) -> Bool {
  let positions = fields.map { line.range(of: "\"\($0)\":")?.lowerBound }
  guard positions.allSatisfy({ $0 != nil }) else { return false }
  let found = positions.compactMap { $0 }
  return found == found.sorted()
}

@Suite struct SBCtlParsingTests {
  @Test func topicCreateParsesEveryFlag() throws {
    let command = try SBCtl.parseAsRoot([
      "topic", "create", "orders", "--partitions", "6", "--replicas", "3", "--config",
      "retention.ms=1000", "--config", "cleanup.policy=delete", "--brokers", "a:1,b:2",
      "--output", "json",
    ])
    let create = try #require(command as? TopicCreateCommand)
    #expect(create.name == "orders")
    #expect(create.partitions == 6)
    #expect(create.replicas == 3)
    #expect(
      try create.parsedConfigs() == ["retention.ms": "1000", "cleanup.policy": "delete"])
    #expect(create.common.output == .json)
    let config = try create.common.clientConfig(environment: [:])
    #expect(config.bootstrapBrokers.map(\.description) == ["a:1", "b:2"])
  }

  @Test func topicSubcommandsParse() throws {
    #expect(try SBCtl.parseAsRoot(["topic", "list"]) is TopicListCommand)
    let describe = try #require(
      try SBCtl.parseAsRoot(["topic", "describe", "t"]) as? TopicDescribeCommand)
    #expect(describe.name == "t")
    #expect(describe.common.output == .table)
    #expect(try SBCtl.parseAsRoot(["topic", "delete", "t"]) is TopicDeleteCommand)
  }

  @Test func produceParsesFlags() throws {
    let produce = try #require(
      try SBCtl.parseAsRoot([
        "produce", "events", "--partition", "2", "--key-delimiter", ":", "--acks", "1",
        "--output", "jsonl",
      ]) as? ProduceCommand)
    #expect(produce.topic == "events")
    #expect(produce.partition == 2)
    #expect(produce.keyDelimiter == ":")
    #expect(produce.acks == "1")
    #expect(produce.common.output == .jsonl)
    let split = produce.splitLine(Array("user-1:hello:world".utf8))
    #expect(split.key == Array("user-1".utf8))
    #expect(split.value == Array("hello:world".utf8))
    #expect(produce.splitLine(Array("no delimiter".utf8)).key == nil)
    #expect(produce.splitLine(Array(":".utf8)) == (key: [], value: []))
    let raw = produce.splitLine([0xff, UInt8(ascii: ":"), 0xfe])
    #expect(raw.key == [0xff])
    #expect(raw.value == [0xfe])
  }

  @Test func consumeParsesFlags() throws {
    let consume = try #require(
      try SBCtl.parseAsRoot([
        "consume", "events", "--from", "42", "--count", "10", "--timeout-ms", "500",
        "--output", "jsonl",
      ]) as? ConsumeCommand)
    #expect(consume.from == .offset(42))
    #expect(consume.count == 10)
    #expect(consume.timeoutMs == 500)
    #expect(consume.partition == nil)
    let fromEnd = try #require(
      try SBCtl.parseAsRoot(["consume", "events", "--from", "end"]) as? ConsumeCommand)
    #expect(fromEnd.from == .end)
    let defaults = try #require(try SBCtl.parseAsRoot(["consume", "events"]) as? ConsumeCommand)
    #expect(defaults.from == .beginning)
    #expect(defaults.timeoutMs == 10_000)
  }

  @Test(arguments: [
    ["produce", "t", "--acks", "2"],
    ["consume", "t", "--from", "yesterday"],
    ["consume", "t", "--from", "-5"],
    ["topic", "create", "t"],
    ["topic", "create", "t", "--partitions", "0"],
    ["topic", "create", "t", "--partitions", "1", "--config", "novalue"],
    ["topic", "list", "--output", "jsonl"],
    ["topic", "list", "--output", "xml"],
  ])
  func invalidUsageIsRejected(arguments: [String]) {
    #expect(throws: (any Error).self) {
      _ = try SBCtl.parseAsRoot(arguments)
    }
  }

  @Test func usageErrorsExitWith64() {
    #expect(SBCtl.exitCode(for: ValidationError("x")).rawValue == ExitStatus.usage)
  }

  @Test func brokersComeFromTheFlagThenTheEnvironment() throws {
    let list = try #require(try SBCtl.parseAsRoot(["topic", "list"]) as? TopicListCommand)
    let error = #expect(throws: ValidationError.self) {
      _ = try list.common.clientConfig(environment: [:])
    }
    #expect(error?.message.contains("SB_BROKERS") == true)
    let fromEnvironment = try list.common.clientConfig(environment: ["SB_BROKERS": "h:9092"])
    #expect(fromEnvironment.bootstrapBrokers.map(\.description) == ["h:9092"])
    let flagged = try #require(
      try SBCtl.parseAsRoot(["topic", "list", "--brokers", "x:1"]) as? TopicListCommand)
    let fromFlag = try flagged.common.clientConfig(environment: ["SB_BROKERS": "h:9092"])
    #expect(fromFlag.bootstrapBrokers.map(\.description) == ["x:1"])
    #expect(throws: ValidationError.self) {
      _ = try TopicListCommand.parse(["--brokers", "no-port"]).common.clientConfig(
        environment: [:])
    }
  }
}

@Suite(.timeLimit(.minutes(1))) struct SBCtlOutputTests {
  @Test func recordJSONHasTheDocumentedShape() throws {
    let line = ConsumeCommand.recordJSON(
      ConsumerRecord(
        topic: "t", partition: 1, offset: 5, timestamp: 1_700_000_000_000, key: nil,
        value: Array("he said \"hi\"\n".utf8))
    ).rendered()
    #expect(fieldOrder(line, ["topic", "partition", "offset", "timestamp", "key", "value"]))
    let parsed = try object(line)
    #expect(parsed["topic"] as? String == "t")
    #expect(parsed["partition"] as? Int == 1)
    #expect(parsed["offset"] as? Int == 5)
    #expect(parsed["timestamp"] as? Int == 1_700_000_000_000)
    #expect(parsed["key"] is NSNull)
    #expect(parsed["value"] as? String == "he said \"hi\"\n")
    #expect(parsed["valueBase64"] == nil)
  }

  @Test func nonUTF8BytesAreShownAsBase64() throws {
    let line = ConsumeCommand.recordJSON(
      ConsumerRecord(
        topic: "t", partition: 0, offset: 0, timestamp: 0, key: [0xff, 0xfe], value: [0xc3])
    ).rendered()
    let parsed = try object(line)
    #expect(parsed["key"] is NSNull)
    #expect(parsed["keyBase64"] as? String == "//4=")
    #expect(parsed["value"] is NSNull)
    #expect(parsed["valueBase64"] as? String == "ww==")
    #expect(bytesCell([0xff]) == "base64:/w==")
    #expect(bytesCell(nil) == "<null>")
  }

  @Test func controlCharactersAreEscaped() {
    #expect(JSONValue.string("a\u{1}b\tc").rendered() == "\"a\\u0001b\\tc\"")
  }

  @Test func produceThenConsumeThroughTheCommands() async throws {
    try await withFakeCluster { harness in
      let brokers = harness.brokers[0].address.description
      let create = try #require(
        try SBCtl.parseAsRoot([
          "topic", "create", "cli", "--partitions", "2", "--brokers", brokers, "--output", "json",
        ]) as? TopicCreateCommand)
      let createConsole = Console.memory()
      #expect(
        try await create.execute(console: createConsole, config: harness.clientConfig()) == 0)
      let created = try object(try #require(createConsole.standardOutputLines.first))
      #expect(created["name"] as? String == "cli")
      #expect(created["partitions"] as? Int == 2)

      let produce = try #require(
        try SBCtl.parseAsRoot([
          "produce", "cli", "--key-delimiter", "=", "--output", "jsonl", "--brokers", brokers,
        ]) as? ProduceCommand)
      let produceConsole = Console.memory()
      let lines = (0..<50).map { "k\($0 % 3)=value \($0)" }
      #expect(
        try await produce.execute(
          console: produceConsole, config: harness.clientConfig(), readLine: lineSource(lines))
          == 0)
      let acknowledged = produceConsole.standardOutputLines
      #expect(acknowledged.count == 50)
      #expect(fieldOrder(acknowledged[0], ["topic", "partition", "offset", "key", "value"]))
      for (index, line) in acknowledged.enumerated() {
        let parsed = try object(line)
        #expect(parsed["key"] as? String == "k\(index % 3)")
        #expect(parsed["value"] as? String == "value \(index)")
        let expectedPartition = Murmur2Partitioner.partition(
          forKey: Array("k\(index % 3)".utf8), partitionCount: 2)
        #expect(parsed["partition"] as? Int == Int(expectedPartition))
      }
      // Batched and pipelined, not one request per line.
      #expect(harness.cluster.produceRequests().count < 10)

      let consume = try #require(
        try SBCtl.parseAsRoot([
          "consume", "cli", "--count", "50", "--timeout-ms", "2000", "--output", "jsonl",
          "--brokers", brokers,
        ]) as? ConsumeCommand)
      let consumeConsole = Console.memory()
      #expect(
        try await consume.execute(console: consumeConsole, config: harness.clientConfig()) == 0)
      let consumed = try consumeConsole.standardOutputLines.map(object)
      #expect(consumed.count == 50)
      #expect(
        Set(consumed.compactMap { $0["value"] as? String }) == Set((0..<50).map { "value \($0)" }))

      let describe = try #require(
        try SBCtl.parseAsRoot([
          "topic", "describe", "cli", "--brokers", brokers, "--output", "json",
        ])
          as? TopicDescribeCommand)
      let describeConsole = Console.memory()
      _ = try await describe.execute(console: describeConsole, config: harness.clientConfig())
      let described = try object(try #require(describeConsole.standardOutputLines.first))
      let partitions = try #require(described["partitions"] as? [[String: Any]])
      #expect(partitions.count == 2)
      #expect(
        partitions.compactMap { $0["highWatermark"] as? Int }.reduce(0, +) == 50)
    }
  }

  @Test func failedRecordsAreReportedWithLineNumbers() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("strict", partitions: 2, leaders: [1])
      harness.cluster.withState {
        $0.produceErrors[TopicPartition(topic: "strict", partition: 1)] = [.invalidRequiredAcks]
      }
      let produce = try #require(
        try SBCtl.parseAsRoot(["produce", "strict", "--partition", "1", "--brokers", "x:1"])
          as? ProduceCommand)
      let console = Console.memory()
      let status = try await produce.execute(
        console: console, config: harness.clientConfig(), readLine: lineSource(["a", "b"]))
      #expect(status == ExitStatus.requestFailed)
      #expect(
        console.standardErrorLines.contains {
          $0.contains("line 1") && $0.contains("INVALID_REQUIRED_ACKS")
        })
      #expect(console.standardErrorLines.contains { $0.contains("line 2") })
      #expect(console.standardOutputLines == ["Produced 0 records to strict (2 failed)"])
    }
  }

  @Test func unknownTopicStopsProduceWithExitCode1() async throws {
    try await withFakeCluster { harness in
      let produce = try #require(
        try SBCtl.parseAsRoot(["produce", "absent", "--brokers", "x:1"]) as? ProduceCommand)
      let console = Console.memory()
      let status = try await produce.execute(
        console: console, config: harness.clientConfig(),
        readLine: lineSource(Array(repeating: "x", count: 1_000)))
      #expect(status == ExitStatus.requestFailed)
      #expect(console.standardErrorLines.first?.contains("UNKNOWN_TOPIC_OR_PARTITION") == true)
      #expect(console.standardErrorLines.last?.contains("stopped reading input at line 1") == true)
    }
  }
}

@Suite struct ByteLineReaderTests {
  @Test func splitsRawBytesIntoLines() throws {
    var descriptors: [Int32] = [0, 0]
    #expect(pipe(&descriptors) == 0)
    let input: [UInt8] = Array("one\r\ntwo\n\n".utf8) + [0xff, 0x0a] + Array("last".utf8)
    _ = input.withUnsafeBytes { write(descriptors[1], $0.baseAddress, $0.count) }
    close(descriptors[1])
    let reader = ByteLineReader(descriptor: descriptors[0])
    var lines: [[UInt8]] = []
    while let line = reader.nextLine() {
      lines.append(line)
    }
    close(descriptors[0])
    #expect(lines == [Array("one".utf8), Array("two".utf8), [], [0xff], Array("last".utf8)])
  }
}
