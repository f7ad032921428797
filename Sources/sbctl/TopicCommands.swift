import ArgumentParser
import StreamBusClient

struct TopicCreateCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "create", abstract: "Create a topic.")

  @Argument(help: "Topic name.") var name: String
  @Option(help: "Number of partitions.") var partitions: Int32
  @Option(help: "Replication factor (default: the broker's).") var replicas: Int16?
  @Option(
    name: .customLong("config"), parsing: .singleValue,
    help: "Topic configuration key=value; repeat for more.")
  var configs: [String] = []
  @OptionGroup var common: CommonOptions

  func validate() throws {
    try common.requireTableOrJSON()
    guard partitions > 0 else { throw ValidationError("--partitions must be at least 1") }
    if let replicas, replicas <= 0 {
      throw ValidationError("--replicas must be at least 1")
    }
    _ = try parsedConfigs()
  }

  func parsedConfigs() throws -> [String: String] {
    var result: [String: String] = [:]
    for entry in configs {
      guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
        throw ValidationError("--config \"\(entry)\" is not key=value")
      }
      result[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
    }
    return result
  }

  func run() async throws {
    let console = Console.standard()
    try await runReportingErrors(console: console) {
      try await execute(console: console, config: common.clientConfig())
    }
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    let topicConfigs = try parsedConfigs()
    let created = try await withAdmin(config) { admin in
      try await admin.createTopic(
        name, partitions: partitions, replicationFactor: replicas ?? -1, configs: topicConfigs)
    }
    switch common.output {
    case .table:
      console.line(
        "Created topic \(name) (partitions: \(created.partitions), replication factor: \(created.replicationFactor))"
      )
    case .json, .jsonl:
      console.line(
        JSONValue.object([
          ("name", .string(name)), ("partitions", .integer(Int64(created.partitions))),
          ("replicationFactor", .integer(Int64(created.replicationFactor))),
        ]).rendered())
    }
    return ExitStatus.success
  }
}

struct TopicListCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "list", abstract: "List topics.")

  @OptionGroup var common: CommonOptions

  func validate() throws { try common.requireTableOrJSON() }

  func run() async throws {
    let console = Console.standard()
    try await runReportingErrors(console: console) {
      try await execute(console: console, config: common.clientConfig())
    }
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    let topics = try await withAdmin(config) { try await $0.listTopics() }
    switch common.output {
    case .table:
      var rows = [["NAME", "PARTITIONS", "REPLICATION-FACTOR"]]
      rows += topics.map { [$0.name, String($0.partitionCount), String($0.replicationFactor)] }
      renderTable(rows).forEach(console.line)
    case .json, .jsonl:
      console.line(
        JSONValue.array(
          topics.map {
            .object([
              ("name", .string($0.name)), ("partitions", .integer(Int64($0.partitionCount))),
              ("replicationFactor", .integer(Int64($0.replicationFactor))),
            ])
          }
        ).rendered())
    }
    return ExitStatus.success
  }
}

struct TopicDescribeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "describe",
    abstract: "Show a topic's partitions: leader, epoch, replicas, ISR and offsets.")

  @Argument(help: "Topic name.") var name: String
  @OptionGroup var common: CommonOptions

  func validate() throws { try common.requireTableOrJSON() }

  func run() async throws {
    let console = Console.standard()
    try await runReportingErrors(console: console) {
      try await execute(console: console, config: common.clientConfig())
    }
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    let topic = try await withAdmin(config) { try await $0.describeTopic(name) }
    switch common.output {
    case .table:
      let configs = topic.configs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
      console.line(
        "Topic: \(topic.name)  Partitions: \(topic.partitions.count)  Configs: \(configs.isEmpty ? "-" : configs.joined(separator: ","))"
      )
      var rows = [
        ["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "HIGH-WATERMARK", "ERROR"]
      ]
      func ids(_ list: [Int32]) -> String {
        list.isEmpty ? "-" : list.map(String.init).joined(separator: ",")
      }
      rows += topic.partitions.map { partition in
        [
          String(partition.partition), String(partition.leaderId), String(partition.leaderEpoch),
          ids(partition.replicas), ids(partition.isr), String(partition.logStartOffset),
          String(partition.highWatermark),
          partition.errorCode == .none ? "-" : partition.errorCode.name,
        ]
      }
      renderTable(rows).forEach(console.line)
    case .json, .jsonl:
      console.line(describeJSON(topic).rendered())
    }
    return ExitStatus.success
  }
}

func describeJSON(_ topic: TopicDescription) -> JSONValue {
  func ids(_ list: [Int32]) -> JSONValue { .array(list.map { .integer(Int64($0)) }) }
  return .object([
    ("name", .string(topic.name)),
    (
      "partitions",
      .array(
        topic.partitions.map { partition in
          .object([
            ("partition", .integer(Int64(partition.partition))),
            ("leader", .integer(Int64(partition.leaderId))),
            ("leaderEpoch", .integer(Int64(partition.leaderEpoch))),
            ("replicas", ids(partition.replicas)), ("isr", ids(partition.isr)),
            ("offlineReplicas", ids(partition.offlineReplicas)),
            ("logStartOffset", .integer(partition.logStartOffset)),
            ("highWatermark", .integer(partition.highWatermark)),
            ("error", partition.errorCode == .none ? .null : .string(partition.errorCode.name)),
          ])
        })
    ),
    (
      "configs",
      .object(topic.configs.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
    ),
  ])
}

struct TopicDeleteCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "delete", abstract: "Delete a topic.")

  @Argument(help: "Topic name.") var name: String
  @OptionGroup var common: CommonOptions

  func validate() throws { try common.requireTableOrJSON() }

  func run() async throws {
    let console = Console.standard()
    try await runReportingErrors(console: console) {
      try await execute(console: console, config: common.clientConfig())
    }
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    try await withAdmin(config) { try await $0.deleteTopic(name) }
    switch common.output {
    case .table:
      console.line("Deleted topic \(name)")
    case .json, .jsonl:
      console.line(
        JSONValue.object([("name", .string(name)), ("deleted", .bool(true))]).rendered())
    }
    return ExitStatus.success
  }
}

/// Runs `body` with an Admin that is closed afterwards, whatever happens.
func withAdmin<Result>(_ config: ClientConfig, _ body: (Admin) async throws -> Result)
  async throws -> Result
{
  let admin = Admin(config: config)
  do {
    let result = try await body(admin)
    await admin.close()
    return result
  } catch {
    await admin.close()
    throw error
  }
}
