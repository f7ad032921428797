import ArgumentParser
import StreamBusClient
import StreamBusMetaClient
import StreamBusMetaProtocol

/// Runs a command body against the metaservers named by `options`, reporting errors the
/// documented way.
func runAgainstMetaservers(
  _ options: MetaOptions, _ body: (Console, MetaClient) async throws -> Int32
) async throws {
  let console = Console.standard()
  try await runReportingErrors(console: console) {
    try await withMetaClient(options.clientConfiguration()) { client in
      try await body(console, client)
    }
  }
}

func validNodeID(_ nodeID: Int32, flag: String = "--node-id") throws {
  guard nodeID > 0 else { throw ValidationError("\(flag) must be at least 1") }
}

func validAddress(_ text: String, flag: String) throws {
  do {
    _ = try HostPort(parsing: text)
  } catch {
    throw ValidationError("\(flag): invalid address \"\(text)\" (expected host:port)")
  }
}

struct QuorumCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "quorum",
    abstract: "Show and change the metadata quorum (the metaservers' Raft group).",
    subcommands: [
      QuorumStatusCommand.self, QuorumAddLearnerCommand.self, QuorumPromoteCommand.self,
      QuorumRemoveCommand.self, QuorumTransferLeaderCommand.self,
    ])
}

struct QuorumStatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "Leader, term, commit and applied index, and every member's match index and lag.")

  @OptionGroup var meta: MetaOptions

  func run() async throws {
    try await runAgainstMetaservers(meta) { try await execute(console: $0, client: $1) }
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let status = try await client.quorumStatus()
    switch meta.output {
    case .table, .jsonl: QuorumOutput.table(status).forEach(console.line)
    case .json: console.line(QuorumOutput.json(status).rendered())
    }
    return ExitStatus.success
  }
}

struct QuorumAddLearnerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "add-learner",
    abstract: "Add a metaserver (started with --join) as a non-voting learner.")

  @Option(help: "Node id of the new metaserver.") var nodeID: Int32
  @Option(help: "Its Raft peer address, host:port.") var raftAddress: String
  @Option(help: "Its API address, host:port.") var apiAddress: String
  @OptionGroup var meta: MetaOptions

  func validate() throws {
    try validNodeID(nodeID)
    try validAddress(raftAddress, flag: "--raft-address")
    try validAddress(apiAddress, flag: "--api-address")
  }

  func run() async throws {
    try await runAgainstMetaservers(meta) { try await execute(console: $0, client: $1) }
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    try await client.addLearner(nodeID: nodeID, raftAddress: raftAddress, apiAddress: apiAddress)
    switch meta.output {
    case .table, .jsonl:
      console.line(
        "Added node \(nodeID) as a learner (raft \(raftAddress), api \(apiAddress))")
    case .json:
      console.line(
        JSONValue.object([
          ("nodeID", .integer(Int64(nodeID))), ("role", .string("learner")),
          ("raftAddress", .string(raftAddress)), ("apiAddress", .string(apiAddress)),
        ]).rendered())
    }
    return ExitStatus.success
  }
}

struct QuorumPromoteCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "promote", abstract: "Make a learner a voter.")

  @Option(help: "Node id of the learner.") var nodeID: Int32
  @OptionGroup var meta: MetaOptions

  func validate() throws { try validNodeID(nodeID) }

  func run() async throws {
    try await runAgainstMetaservers(meta) { try await execute(console: $0, client: $1) }
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    try await client.addVoter(nodeID: nodeID)
    switch meta.output {
    case .table, .jsonl: console.line("Promoted node \(nodeID) to voter")
    case .json:
      console.line(
        JSONValue.object([("nodeID", .integer(Int64(nodeID))), ("role", .string("voter"))])
          .rendered())
    }
    return ExitStatus.success
  }
}

struct QuorumRemoveCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "remove", abstract: "Remove a voter or learner from the quorum.")

  @Option(help: "Node id of the member to remove.") var nodeID: Int32
  @OptionGroup var meta: MetaOptions

  func validate() throws { try validNodeID(nodeID) }

  func run() async throws {
    try await runAgainstMetaservers(meta) { try await execute(console: $0, client: $1) }
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    try await client.removeVoter(nodeID: nodeID)
    switch meta.output {
    case .table, .jsonl: console.line("Removed node \(nodeID) from the quorum")
    case .json:
      console.line(
        JSONValue.object([("nodeID", .integer(Int64(nodeID))), ("removed", .bool(true))])
          .rendered())
    }
    return ExitStatus.success
  }
}

struct QuorumTransferLeaderCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "transfer-leader",
    abstract: "Move Raft leadership to another voter (default: any caught-up voter).")

  @Option(help: "Node id of the voter to lead.") var to: Int32?
  @OptionGroup var meta: MetaOptions

  func validate() throws {
    if let to { try validNodeID(to, flag: "--to") }
  }

  func run() async throws {
    try await runAgainstMetaservers(meta) { try await execute(console: $0, client: $1) }
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let leaderID = try await client.transferLeadership(to: to ?? -1)
    switch meta.output {
    case .table, .jsonl: console.line("Leadership moved to node \(leaderID)")
    case .json:
      console.line(JSONValue.object([("leaderID", .integer(Int64(leaderID)))]).rendered())
    }
    return ExitStatus.success
  }
}

struct ClusterCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cluster", abstract: "Show the cluster as the metadata quorum sees it.",
    subcommands: [ClusterStatusCommand.self])
}

struct ClusterStatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status",
    abstract: "Metadata leader, brokers (fenced or not), partition totals, under-replicated "
      + "and offline partitions.")

  @OptionGroup var meta: MetaOptions

  func run() async throws {
    try await runAgainstMetaservers(meta) { try await execute(console: $0, client: $1) }
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let cluster = try await client.describeCluster()
    var topics: [DescribeTopicResponse] = []
    for listed in try await client.listTopics() {
      do {
        topics.append(try await client.describeTopic(listed.name))
      } catch let error as MetaClientError where error.errorCode == .unknownTopicOrPartition {
        // Deleted between the list and the describe: nothing of it left to report.
        continue
      }
    }
    let problems = PartitionProblem.find(in: topics)
    switch meta.output {
    case .table, .jsonl: ClusterOutput.table(cluster, problems: problems).forEach(console.line)
    case .json: console.line(ClusterOutput.json(cluster, problems: problems).rendered())
    }
    return ExitStatus.success
  }
}

struct BrokerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "broker", abstract: "Show the registered brokers.",
    subcommands: [BrokerListCommand.self])
}

struct BrokerListCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "list", abstract: "List registered brokers with status, rack and endpoints.")

  @OptionGroup var meta: MetaOptions

  func run() async throws {
    try await runAgainstMetaservers(meta) { try await execute(console: $0, client: $1) }
  }

  func execute(console: Console, client: MetaClient) async throws -> Int32 {
    let brokers = try await client.describeCluster().brokers
    switch meta.output {
    case .table, .jsonl: BrokerOutput.table(brokers).forEach(console.line)
    case .json: console.line(BrokerOutput.json(brokers).rendered())
    }
    return ExitStatus.success
  }
}
