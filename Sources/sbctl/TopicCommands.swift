import ArgumentParser
import Foundation
import StreamBusClient
import StreamBusMetaClient
import StreamBusMetaProtocol

/// Runs a topic command on the metaservers or the brokers (see `CommonOptions.adminTarget`).
func runTopicCommand(
  _ common: CommonOptions,
  brokers: (Console, ClientConfig) async throws -> Int32,
  metaservers: (Console, MetaClient) async throws -> Int32
) async throws {
  let console = Console.standard()
  try await runReportingErrors(console: console) {
    switch try common.adminTarget() {
    case .brokers(let config):
      return try await brokers(console, config)
    case .metaservers(let configuration):
      return try await withMetaClient(configuration) { try await metaservers(console, $0) }
    }
  }
}

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
    try await runTopicCommand(
      common, brokers: { try await execute(console: $0, config: $1) },
      metaservers: { try await execute(console: $0, client: $1) })
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    let topicConfigs = try parsedConfigs()
    let created = try await withAdmin(config) { admin in
      try await admin.createTopic(
        name, partitions: partitions, replicationFactor: replicas ?? -1, configs: topicConfigs)
    }
    return report(
      console: console,
      created: (partitions: created.partitions, replicationFactor: created.replicationFactor))
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let created = try await client.createTopic(
      name, partitions: partitions, replicationFactor: replicas ?? -1,
      configs: try parsedConfigs())
    return report(
      console: console,
      created: (partitions: created.partitions, replicationFactor: created.replicationFactor))
  }

  private func report(console: Console, created: (partitions: Int32, replicationFactor: Int16))
    -> Int32
  {
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
    try await runTopicCommand(
      common, brokers: { try await execute(console: $0, config: $1) },
      metaservers: { try await execute(console: $0, client: $1) })
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    let topics = try await withAdmin(config) { try await $0.listTopics() }
    return report(console: console, topics: topics)
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let topics = try await client.listTopics()
    switch common.output {
    case .table: MetaTopicOutput.listTable(topics).forEach(console.line)
    case .json, .jsonl: console.line(MetaTopicOutput.listJSON(topics).rendered())
    }
    return ExitStatus.success
  }

  private func report(console: Console, topics: [TopicListing]) -> Int32 {
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
    try await runTopicCommand(
      common, brokers: { try await execute(console: $0, config: $1) },
      metaservers: { try await execute(console: $0, client: $1) })
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    let topic = try await withAdmin(config) { try await $0.describeTopic(name) }
    return report(console: console, topic: topic)
  }

  /// The quorum's assignment, then every replica's broker for its own state (leaders for
  /// HW and their followers' progress, followers for their log end offset).
  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let topic = try await client.describeTopic(name)
    let hosts = Set(topic.partitions.flatMap(\.replicas))
    var addresses: [Int32: String] = [:]
    if !hosts.isEmpty {
      for broker in try await client.describeCluster().brokers
      where hosts.contains(broker.brokerID) {
        addresses[broker.brokerID] = ReplicaStatusClient.clientAddress(of: broker)
      }
    }
    let answers = await ReplicaStatusClient.ask(
      addresses, topics: [.init(name: name)],
      timeoutMs: min(common.requestTimeoutMs, Self.brokerTimeoutMsMax))
    let reports = PartitionReport.build(topic: topic, answers: answers)
    switch common.output {
    case .table: TopicDescribeOutput.table(topic, reports).forEach(console.line)
    case .json, .jsonl: console.line(TopicDescribeOutput.json(topic, reports).rendered())
    }
    return ExitStatus.success
  }

  /// A broker that has not answered ReplicaStatus by then is shown as `-`.
  static let brokerTimeoutMsMax: Int64 = 3_000

  private func report(console: Console, topic: TopicDescription) -> Int32 {
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
    try await runTopicCommand(
      common, brokers: { try await execute(console: $0, config: $1) },
      metaservers: { try await execute(console: $0, client: $1) })
  }

  func execute(console: Console, config: ClientConfig) async throws -> Int32 {
    try await withAdmin(config) { try await $0.deleteTopic(name) }
    return report(console: console)
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    try await client.deleteTopic(name)
    return report(console: console)
  }

  private func report(console: Console) -> Int32 {
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

struct TopicAlterConfigCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "alter-config",
    abstract: "Set and delete configuration keys of a topic (needs the metaservers).",
    discussion: """
      All changes apply together or not at all. Only the metadata quorum can change \
      configurations: pass --metaservers or set SB_METASERVERS.
      """)

  @Argument(help: "Topic name.") var name: String
  @Option(
    name: .customLong("set"), parsing: .singleValue,
    help: "Set key=value; repeat for more.")
  var sets: [String] = []
  @Option(
    name: .customLong("delete"), parsing: .singleValue,
    help: "Delete a key (back to the default); repeat for more.")
  var deletes: [String] = []
  @OptionGroup var common: CommonOptions

  func validate() throws {
    try common.requireTableOrJSON()
    guard !sets.isEmpty || !deletes.isEmpty else {
      throw ValidationError("nothing to change: pass --set key=value and/or --delete key")
    }
    _ = try changes()
  }

  /// The requested changes in the order given: sets (value) then deletes (nil).
  func changes() throws -> [AlterConfigsRequest.Change] {
    var changes: [AlterConfigsRequest.Change] = []
    var seen: Set<String> = []
    for entry in sets {
      guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
        throw ValidationError("--set \"\(entry)\" is not key=value")
      }
      let key = String(entry[..<equals])
      guard seen.insert(key).inserted else {
        throw ValidationError("key \"\(key)\" is changed twice")
      }
      changes.append(.init(key: key, value: String(entry[entry.index(after: equals)...])))
    }
    for key in deletes {
      guard !key.isEmpty, !key.contains("=") else {
        throw ValidationError("--delete takes a key without a value, got \"\(key)\"")
      }
      guard seen.insert(key).inserted else {
        throw ValidationError("key \"\(key)\" is changed twice")
      }
      changes.append(.init(key: key, value: nil))
    }
    return changes
  }

  func run() async throws {
    guard let configuration = try metaserversConfiguration() else {
      throw ValidationError(
        "topic alter-config needs the metaservers: pass --metaservers host:port[,host:port...] "
          + "or set SB_METASERVERS")
    }
    let console = Console.standard()
    try await runReportingErrors(console: console) {
      try await withMetaClient(configuration) { try await execute(console: console, client: $0) }
    }
  }

  /// From `--metaservers`, `--cluster-dir` or `SB_METASERVERS`; nil when none is set
  /// (brokers cannot change configurations, so `--brokers` does not count).
  func metaserversConfiguration(
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> MetaClientConfiguration? {
    let fromCluster = try common.localCluster().map(\.metaserverAPIList)
    guard let text = common.metaservers ?? fromCluster ?? environment["SB_METASERVERS"],
      !text.allSatisfy(\.isWhitespace)
    else {
      return nil
    }
    return try common.metaClientConfiguration(list: text)
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let changes = try changes()
    do {
      try await client.alterConfigs(topic: name, changes: changes)
    } catch let error as MetaClientError where error.subject == nil && error.code == .server {
      throw MetaClientError(.server, errorCode: error.errorCode, error.message, subject: name)
    }
    let set = changes.compactMap { change in change.value.map { (change.key, $0) } }
    let deleted = changes.filter { $0.value == nil }.map(\.key)
    switch common.output {
    case .table:
      var parts: [String] = []
      if !set.isEmpty {
        parts.append("set " + set.map { "\($0.0)=\($0.1)" }.joined(separator: ","))
      }
      if !deleted.isEmpty { parts.append("deleted " + deleted.joined(separator: ",")) }
      console.line("Altered configs of topic \(name): " + parts.joined(separator: "; "))
    case .json, .jsonl:
      console.line(
        JSONValue.object([
          ("name", .string(name)),
          ("set", .object(set.map { ($0.0, .string($0.1)) })),
          ("deleted", .array(deleted.map { .string($0) })),
        ]).rendered())
    }
    return ExitStatus.success
  }
}
