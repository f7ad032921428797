import ArgumentParser
import Foundation
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol
import StreamBusTransport
import Testing

@testable import sbctl

private func object(_ line: String) throws -> [String: Any] {
  let value = try JSONSerialization.jsonObject(with: Data(line.utf8))
  return try #require(value as? [String: Any])
}

private func parse<Command>(_ arguments: [String], as _: Command.Type) throws -> Command {
  try #require(try SBCtl.parseAsRoot(arguments) as? Command)
}

private let status = QuorumStatusResponse(
  leaderID: 2, term: 17, commitIndex: 1_000, appliedIndex: 998,
  voters: [
    QuorumMember(
      nodeID: 1, raftAddress: "127.0.0.1:9001", apiAddress: "127.0.0.1:9101", matchIndex: 1_000,
      lag: 0, lastContactMs: 12),
    QuorumMember(
      nodeID: 2, raftAddress: "127.0.0.1:9002", apiAddress: "127.0.0.1:9102", matchIndex: 1_000,
      lag: 0, lastContactMs: 0),
  ],
  learners: [
    QuorumMember(
      nodeID: 4, raftAddress: "127.0.0.1:9004", apiAddress: "", matchIndex: 10, lag: 990,
      lastContactMs: -1)
  ])

private let brokers = [
  MetaBroker(
    brokerID: 8, incarnationID: 2, epoch: 5, endpoints: [], rack: nil,
    capacity: MetaBrokerCapacity(diskBytes: 0), fenced: false, inControlledShutdown: true),
  MetaBroker(
    brokerID: 7, incarnationID: -3, epoch: 41,
    endpoints: [
      MetaEndpoint(name: "client", host: "::1", port: 9092),
      MetaEndpoint(name: "replication", host: "10.0.0.7", port: 9093),
    ], rack: "rack-b", capacity: MetaBrokerCapacity(diskBytes: 1 << 30), fenced: true,
    inControlledShutdown: false),
  MetaBroker(
    brokerID: 9, incarnationID: 1, epoch: 6,
    endpoints: [MetaEndpoint(name: "client", host: "h9", port: 1)], rack: "rack-a",
    capacity: MetaBrokerCapacity(diskBytes: 5), fenced: false, inControlledShutdown: false),
]

@Suite struct SBCtlMetaParsingTests {
  @Test func quorumCommandsParse() throws {
    let statusCommand = try parse(
      ["quorum", "status", "--metaservers", "a:1,b:2", "--output", "json"],
      as: QuorumStatusCommand.self)
    #expect(statusCommand.meta.output == .json)
    let configuration = try statusCommand.meta.clientConfiguration(environment: [:])
    #expect(configuration.bootstrap.map(\.description) == ["a:1", "b:2"])
    #expect(configuration.clientID == "sbctl")
    let learner = try parse(
      [
        "quorum", "add-learner", "--node-id", "4", "--raft-address", "127.0.0.1:9004",
        "--api-address", "[::1]:9104",
      ], as: QuorumAddLearnerCommand.self)
    #expect(learner.nodeID == 4)
    #expect(learner.raftAddress == "127.0.0.1:9004")
    #expect(learner.apiAddress == "[::1]:9104")
    #expect(
      try parse(["quorum", "promote", "--node-id", "4"], as: QuorumPromoteCommand.self).nodeID == 4)
    #expect(
      try parse(["quorum", "remove", "--node-id", "3"], as: QuorumRemoveCommand.self).nodeID == 3)
    #expect(
      try parse(["quorum", "transfer-leader"], as: QuorumTransferLeaderCommand.self).to == nil)
    #expect(
      try parse(["quorum", "transfer-leader", "--to", "2"], as: QuorumTransferLeaderCommand.self).to
        == 2)
    #expect(try SBCtl.parseAsRoot(["cluster", "status"]) is ClusterStatusCommand)
    #expect(try SBCtl.parseAsRoot(["broker", "list"]) is BrokerListCommand)
  }

  @Test(arguments: [
    [
      "quorum", "add-learner", "--node-id", "4", "--raft-address", "nohost", "--api-address", "a:1",
    ],
    [
      "quorum", "add-learner", "--node-id", "4", "--raft-address", "a:1", "--api-address",
      "a:99999",
    ],
    ["quorum", "add-learner", "--node-id", "0", "--raft-address", "a:1", "--api-address", "a:2"],
    ["quorum", "add-learner", "--raft-address", "a:1", "--api-address", "a:2"],
    ["quorum", "promote"],
    ["quorum", "remove", "--node-id", "-1"],
    ["quorum", "transfer-leader", "--to", "0"],
    ["quorum", "status", "--output", "jsonl"],
    ["quorum", "status", "--request-timeout-ms", "0"],
    ["cluster", "status", "--output", "xml"],
    ["topic", "alter-config", "t"],
    ["topic", "alter-config", "t", "--set", "novalue"],
    ["topic", "alter-config", "t", "--set", "a=1", "--delete", "a"],
    ["topic", "alter-config", "t", "--delete", "a=1"],
  ])
  func invalidUsageIsRejected(arguments: [String]) {
    #expect(throws: (any Error).self) {
      _ = try SBCtl.parseAsRoot(arguments)
    }
  }

  @Test func metaserversComeFromTheFlagThenTheEnvironment() throws {
    let command = try parse(["broker", "list"], as: BrokerListCommand.self)
    let missing = #expect(throws: ValidationError.self) {
      _ = try command.meta.clientConfiguration(environment: [:])
    }
    #expect(
      missing?.message
        == "no metaservers: pass --metaservers host:port[,host:port...] or set SB_METASERVERS")
    let fromEnvironment = try command.meta.clientConfiguration(
      environment: ["SB_METASERVERS": "m1:9100, m2:9100"])
    #expect(fromEnvironment.bootstrap.map(\.description) == ["m1:9100", "m2:9100"])
    let flagged = try parse(["broker", "list", "--metaservers", "x:1"], as: BrokerListCommand.self)
    #expect(
      try flagged.meta.clientConfiguration(environment: ["SB_METASERVERS": "m1:9100"]).bootstrap
        .map(\.description) == ["x:1"])
    for bad in ["x", "x:1,,y:2", "[::1:5"] {
      #expect(throws: ValidationError.self, "\(bad)") {
        _ = try command.meta.clientConfiguration(environment: ["SB_METASERVERS": bad])
      }
    }
  }

  /// `--metaservers` wins, then `--brokers`, then SB_METASERVERS, then SB_BROKERS.
  @Test func topicCommandsPickTheirTarget() throws {
    func target(_ flags: [String], _ environment: [String: String]) throws -> String {
      let command = try parse(["topic", "list"] + flags, as: TopicListCommand.self)
      switch try command.common.adminTarget(environment: environment) {
      case .brokers(let config):
        return "brokers " + config.bootstrapBrokers.map(\.description).joined(separator: ",")
      case .metaservers(let configuration):
        return "metaservers " + configuration.bootstrap.map(\.description).joined(separator: ",")
      }
    }
    let both = ["SB_METASERVERS": "m:1", "SB_BROKERS": "b:1"]
    #expect(try target(["--metaservers", "x:1", "--brokers", "y:1"], both) == "metaservers x:1")
    #expect(try target(["--brokers", "y:1"], both) == "brokers y:1")
    #expect(try target([], both) == "metaservers m:1")
    #expect(try target([], ["SB_BROKERS": "b:1"]) == "brokers b:1")
    #expect(try target([], ["SB_METASERVERS": " ", "SB_BROKERS": "b:1"]) == "brokers b:1")
    let error = #expect(throws: ValidationError.self) { _ = try target([], [:]) }
    #expect(
      error?.message == "no brokers: pass --brokers host:port[,host:port...] or set SB_BROKERS")
  }

  @Test func alterConfigCollectsSetsAndDeletes() throws {
    let command = try parse(
      [
        "topic", "alter-config", "orders", "--set", "retention.ms=1000", "--set",
        "cleanup.policy=compact,delete", "--delete", "segment.bytes",
      ], as: TopicAlterConfigCommand.self)
    #expect(
      try command.changes() == [
        .init(key: "retention.ms", value: "1000"),
        .init(key: "cleanup.policy", value: "compact,delete"),
        .init(key: "segment.bytes", value: nil),
      ])
    #expect(try command.metaserversConfiguration(environment: ["SB_BROKERS": "b:1"]) == nil)
    #expect(
      try command.metaserversConfiguration(environment: ["SB_METASERVERS": "m:1"])?.bootstrap
        .map(\.description) == ["m:1"])
  }

  @Test func metaClientErrorsMapToTheDocumentedExitCodes() {
    #expect(ExitStatus.code(for: MetaClientError.server(.topicAlreadyExists, message: nil)) == 1)
    #expect(ExitStatus.code(for: MetaClientError(.timeout, "x")) == 2)
    #expect(ExitStatus.code(for: MetaClientError(.protocolViolation, "x")) == 1)
    #expect(ExitStatus.code(for: MetaClientError(.invalidArgument, "x")) == 64)
  }
}

@Suite struct SBCtlMetaOutputTests {
  @Test func quorumStatusTable() {
    #expect(
      QuorumOutput.table(status) == [
        "Leader: 2  Term: 17  Commit index: 1000  Applied index: 998",
        "NODE  ROLE     RAFT-ADDRESS    API-ADDRESS     MATCH-INDEX  LAG  LAST-CONTACT-MS",
        "1     voter    127.0.0.1:9001  127.0.0.1:9101  1000         0    12",
        "2     leader   127.0.0.1:9002  127.0.0.1:9102  1000         0    0",
        "4     learner  127.0.0.1:9004  -               10           990  -",
      ])
  }

  @Test func quorumStatusJSON() throws {
    let line = QuorumOutput.json(status).rendered()
    let parsed = try object(line)
    #expect(parsed["leaderID"] as? Int == 2)
    #expect(parsed["term"] as? Int == 17)
    #expect(parsed["commitIndex"] as? Int == 1_000)
    #expect(parsed["appliedIndex"] as? Int == 998)
    let voters = try #require(parsed["voters"] as? [[String: Any]])
    #expect(voters.map { $0["nodeID"] as? Int } == [1, 2])
    #expect(voters.map { $0["role"] as? String } == ["voter", "leader"])
    let learner = try #require((parsed["learners"] as? [[String: Any]])?.first)
    #expect(learner["role"] as? String == "learner")
    #expect(learner["lag"] as? Int == 990)
    #expect(learner["matchIndex"] as? Int == 10)
    #expect(learner["apiAddress"] is NSNull)
    #expect(learner["lastContactMs"] is NSNull)
    #expect(
      line.hasPrefix(
        #"{"leaderID":2,"term":17,"commitIndex":1000,"appliedIndex":998,"voters":[{"nodeID":1,"role":"voter","raftAddress""#
      ))
  }

  @Test func brokerListSortsAndShowsStatus() throws {
    #expect(
      BrokerOutput.table(brokers) == [
        "ID  STATUS         RACK    EPOCH  DISK-BYTES  ENDPOINTS",
        "7   fenced         rack-b  41     1073741824  client=[::1]:9092,replication=10.0.0.7:9093",
        "8   shutting-down  -       5      0           -",
        "9   active         rack-a  6      5           client=h9:1",
      ])
    let parsed = try #require(
      try JSONSerialization.jsonObject(with: Data(BrokerOutput.json(brokers).rendered().utf8))
        as? [[String: Any]])
    #expect(parsed.map { $0["id"] as? Int } == [7, 8, 9])
    #expect(parsed.map { $0["status"] as? String } == ["fenced", "shutting-down", "active"])
    #expect(parsed[0]["fenced"] as? Bool == true)
    #expect(parsed[1]["rack"] is NSNull)
    #expect(parsed[0]["incarnationID"] as? Int == -3)
    let endpoint = try #require((parsed[0]["endpoints"] as? [[String: Any]])?.first)
    #expect(endpoint["host"] as? String == "::1")
    #expect(endpoint["port"] as? Int == 9092)
  }

  @Test func clusterStatusSummarisesBrokersAndPartitions() throws {
    let cluster = DescribeClusterResponse(
      clusterID: "sb-1", leaderID: 3, metadataOffset: 12_345, brokers: brokers, topicCount: 4,
      partitionCount: 96, underReplicatedPartitionCount: 5, offlinePartitionCount: 1)
    let lines = ClusterOutput.table(cluster, problems: [])
    #expect(lines[0] == "Cluster: sb-1  Metadata leader: 3  Metadata offset: 12345")
    #expect(
      lines[1]
        == "Brokers: 3 (1 fenced)  Topics: 4  Partitions: 96  Under-replicated: 5  Offline: 1")
    #expect(lines.count == 2 + 1 + brokers.count + 1)
    #expect(lines[2] == "ID  ADDRESS     RACK    FENCED  CONTROLLED-SHUTDOWN  EPOCH")
    #expect(lines[3] == "7   [::1]:9092  rack-b  yes     no                   41")
    let parsed = try object(ClusterOutput.json(cluster, problems: []).rendered())
    #expect(parsed["leaderID"] as? Int == 3)
    #expect(parsed["fencedBrokers"] as? Int == 1)
    #expect(parsed["partitions"] as? Int == 96)
    #expect(parsed["underReplicatedPartitions"] as? Int == 5)
    #expect(parsed["offlinePartitions"] as? Int == 1)
    #expect((parsed["brokers"] as? [Any])?.count == 3)
  }

  @Test func topicDescribeFromTheMetaservers() throws {
    let topic = DescribeTopicResponse(
      name: "orders", topicID: 17, configs: ["retention.ms": "1000", "cleanup.policy": "delete"],
      partitions: [
        MetaPartition(
          topicID: 17, partition: 0, replicas: [1, 2, 3], isr: [1, 3], leader: 1, leaderEpoch: 4,
          partitionEpoch: 9, addingReplicas: [3], removingReplicas: []),
        MetaPartition(
          topicID: 17, partition: 1, replicas: [2], isr: [], leader: -1, leaderEpoch: 2,
          partitionEpoch: 3),
      ])
    // No broker answered: offsets are `-`, and the table says why below it.
    let reports = PartitionReport.build(topic: topic, answers: [:])
    #expect(
      Array(TopicDescribeOutput.table(topic, reports).prefix(4)) == [
        "Topic: orders  Partitions: 2  Configs: cleanup.policy=delete,retention.ms=1000  TopicID: 17",
        "PARTITION  LEADER  EPOCH  PARTITION-EPOCH  REPLICAS  ISR  ADDING  REMOVING  HW  LEO          STATUS",
        "0          1       4      9                1,2,3     1,3  3       -         -   1=-,2=-,3=-  under-replicated",
        "1          -1      2      3                2         -    -       -         -   2=-          offline,under-replicated",
      ])
    let parsed = try object(TopicDescribeOutput.json(topic, reports).rendered())
    #expect(parsed["topicID"] as? Int == 17)
    #expect((parsed["configs"] as? [String: String])?["retention.ms"] == "1000")
    let partitions = try #require(parsed["partitions"] as? [[String: Any]])
    #expect(partitions[0]["isr"] as? [Int] == [1, 3])
    #expect(partitions[0]["addingReplicas"] as? [Int] == [3])
    #expect(partitions[1]["leader"] as? Int == -1)
  }
}

/// The commands' `execute` against the in-process fake quorum (the real metaserver is
/// exercised by the metaserver's own end-to-end tests).
@Suite struct SBCtlMetaCommandTests {
  private func withQuorum(_ body: (FakeQuorum, MetaClient) async throws -> Void) async throws {
    let quorum = try await FakeQuorum.start(nodes: 3, leaderID: 2)
    let client = MetaClient(
      configuration: MetaClientConfiguration(
        bootstrap: [quorum.address(1)], requestTimeoutMs: 5_000))
    do {
      try await body(quorum, client)
    } catch {
      await client.close()
      await quorum.stop()
      throw error
    }
    await client.close()
    await quorum.stop()
  }

  @Test func topicLifecycleThroughTheMetaservers() async throws {
    try await withQuorum { quorum, client in
      let create = try parse(
        ["topic", "create", "orders", "--partitions", "3", "--replicas", "2", "--config", "a=b"],
        as: TopicCreateCommand.self)
      let console = Console.memory()
      #expect(try await create.execute(console: console, client: client) == 0)
      #expect(
        console.standardOutputLines == [
          "Created topic orders (partitions: 3, replication factor: 2)"
        ])

      let duplicate = Console.memory()
      await #expect(throws: ExitCode(ExitStatus.requestFailed)) {
        try await runReportingErrors(console: duplicate) {
          try await create.execute(console: duplicate, client: client)
        }
      }
      #expect(
        duplicate.standardErrorLines == [
          "sbctl: error: TOPIC_ALREADY_EXISTS (36) for orders: Topic 'orders' already exists."
        ])

      let alter = try parse(
        [
          "topic", "alter-config", "orders", "--set", "retention.ms=5", "--delete", "a", "--output",
          "json",
        ],
        as: TopicAlterConfigCommand.self)
      let alterConsole = Console.memory()
      #expect(try await alter.execute(console: alterConsole, client: client) == 0)
      #expect(
        alterConsole.standardOutputLines == [
          #"{"name":"orders","set":{"retention.ms":"5"},"deleted":["a"]}"#
        ])
      #expect(quorum.withState { $0.topicConfigs["orders"] } == ["retention.ms": "5"])

      let list = try parse(["topic", "list", "--output", "json"], as: TopicListCommand.self)
      let listConsole = Console.memory()
      #expect(try await list.execute(console: listConsole, client: client) == 0)
      #expect(
        listConsole.standardOutputLines == [
          #"[{"name":"orders","partitions":1,"replicationFactor":1,"topicID":100}]"#
        ])

      let describe = try parse(["topic", "describe", "orders"], as: TopicDescribeCommand.self)
      let describeConsole = Console.memory()
      #expect(try await describe.execute(console: describeConsole, client: client) == 0)
      #expect(
        describeConsole.standardOutputLines.first
          == "Topic: orders  Partitions: 1  Configs: retention.ms=5  TopicID: 100")

      let delete = try parse(["topic", "delete", "orders"], as: TopicDeleteCommand.self)
      let deleteConsole = Console.memory()
      #expect(try await delete.execute(console: deleteConsole, client: client) == 0)
      #expect(deleteConsole.standardOutputLines == ["Deleted topic orders"])

      let missing = Console.memory()
      await #expect(throws: ExitCode(ExitStatus.requestFailed)) {
        try await runReportingErrors(console: missing) {
          try await describe.execute(console: missing, client: client)
        }
      }
      #expect(
        missing.standardErrorLines == [
          "sbctl: error: UNKNOWN_TOPIC_OR_PARTITION (3) for orders: Topic 'orders' does not exist."
        ])
    }
  }

  @Test func quorumMembershipThroughTheMetaservers() async throws {
    try await withQuorum { quorum, client in
      let add = try parse(
        [
          "quorum", "add-learner", "--node-id", "4", "--raft-address", "127.0.0.1:9004",
          "--api-address", "127.0.0.1:9104",
        ], as: QuorumAddLearnerCommand.self)
      let addConsole = Console.memory()
      #expect(try await add.execute(console: addConsole, client: client) == 0)
      #expect(
        addConsole.standardOutputLines == [
          "Added node 4 as a learner (raft 127.0.0.1:9004, api 127.0.0.1:9104)"
        ])

      let statusCommand = try parse(["quorum", "status"], as: QuorumStatusCommand.self)
      let statusConsole = Console.memory()
      #expect(try await statusCommand.execute(console: statusConsole, client: client) == 0)
      let lines = statusConsole.standardOutputLines
      #expect(lines.first == "Leader: 2  Term: 3  Commit index: 10  Applied index: 10")
      #expect(lines.count == 2 + 3 + 1)
      #expect(lines.last?.hasPrefix("4     learner  raft-4:1") == true)
      #expect(lines.contains { $0.hasPrefix("2     leader") })

      let promote = try parse(
        ["quorum", "promote", "--node-id", "4", "--output", "json"], as: QuorumPromoteCommand.self)
      let promoteConsole = Console.memory()
      #expect(try await promote.execute(console: promoteConsole, client: client) == 0)
      #expect(promoteConsole.standardOutputLines == [#"{"nodeID":4,"role":"voter"}"#])

      let remove = try parse(["quorum", "remove", "--node-id", "4"], as: QuorumRemoveCommand.self)
      let removeConsole = Console.memory()
      #expect(try await remove.execute(console: removeConsole, client: client) == 0)
      #expect(removeConsole.standardOutputLines == ["Removed node 4 from the quorum"])
      let again = Console.memory()
      await #expect(throws: ExitCode(ExitStatus.requestFailed)) {
        try await runReportingErrors(console: again) {
          try await remove.execute(console: again, client: client)
        }
      }
      #expect(
        again.standardErrorLines == ["sbctl: error: INVALID_REQUEST (42): node 4 is not a member"])

      let transfer = try parse(
        ["quorum", "transfer-leader", "--to", "3"], as: QuorumTransferLeaderCommand.self)
      let transferConsole = Console.memory()
      #expect(try await transfer.execute(console: transferConsole, client: client) == 0)
      #expect(transferConsole.standardOutputLines == ["Leadership moved to node 3"])
      #expect(quorum.withState { $0.leaderID } == 3)
    }
  }

  @Test func clusterStatusAndBrokerListThroughTheMetaservers() async throws {
    try await withQuorum { quorum, client in
      quorum.withState { $0.brokers = brokers }
      let cluster = try parse(["cluster", "status"], as: ClusterStatusCommand.self)
      let console = Console.memory()
      #expect(try await cluster.execute(console: console, client: client) == 0)
      #expect(
        console.standardOutputLines.first
          == "Cluster: fake  Metadata leader: 2  Metadata offset: 10")
      let list = try parse(["broker", "list", "--output", "json"], as: BrokerListCommand.self)
      let listConsole = Console.memory()
      #expect(try await list.execute(console: listConsole, client: client) == 0)
      #expect(listConsole.standardOutputLines == [BrokerOutput.json(brokers).rendered()])
    }
  }

  @Test func unreachableMetaserversExitWith2AndSayWhy() async throws {
    let dead = try await FakeQuorum.refusingAddress()
    let command = try parse(
      ["quorum", "status", "--metaservers", "\(dead)", "--request-timeout-ms", "300"],
      as: QuorumStatusCommand.self)
    let console = Console.memory()
    await #expect(throws: ExitCode(ExitStatus.unreachable)) {
      try await runReportingErrors(console: console) {
        try await withMetaClient(command.meta.clientConfiguration(environment: [:])) {
          try await command.execute(console: console, client: $0)
        }
      }
    }
    let line = try #require(console.standardErrorLines.first)
    #expect(
      line.hasPrefix(
        "sbctl: error: timeout error: no metaserver answered QuorumStatus within 300 ms (metaservers \(dead)"
      ),
      "\(line)")
    #expect(line.contains("last error: \(dead): connectionFailed"), "\(line)")
  }
}
