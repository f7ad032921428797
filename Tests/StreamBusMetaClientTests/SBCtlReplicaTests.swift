import Foundation
import StreamBusMetaProtocol
import StreamBusProtocol
import Testing

@testable import sbctl

private func object(_ line: String) throws -> [String: Any] {
  let value = try JSONSerialization.jsonObject(with: Data(line.utf8))
  return try #require(value as? [String: Any])
}

private func leaderStatus(
  _ partition: Int32, highWatermark: Int64, logEndOffset: Int64,
  followers: [ReplicaStatusResponse.Follower] = []
) -> ReplicaStatusResponse.Partition {
  ReplicaStatusResponse.Partition(
    partition: partition, role: .leader, leaderEpoch: 4, partitionEpoch: 9, isr: [1, 2, 3],
    logStartOffset: 0, highWatermark: highWatermark, logEndOffset: logEndOffset,
    durableEndOffset: logEndOffset, followers: followers)
}

private func followerStatus(_ partition: Int32, logEndOffset: Int64)
  -> ReplicaStatusResponse.Partition
{
  ReplicaStatusResponse.Partition(
    partition: partition, role: .follower, leaderEpoch: 4, partitionEpoch: 9, isr: [1, 2, 3],
    logStartOffset: 0, highWatermark: logEndOffset, logEndOffset: logEndOffset,
    durableEndOffset: logEndOffset)
}

/// Partition 0 healthy, 1 under-replicated (broker 3 out of the ISR and unreachable),
/// 2 offline (no leader).
private let topic = DescribeTopicResponse(
  name: "demo", topicID: 5, configs: [:],
  partitions: [
    MetaPartition(
      topicID: 5, partition: 2, replicas: [3, 1], isr: [3], leader: -1, leaderEpoch: 6,
      partitionEpoch: 11),
    MetaPartition(
      topicID: 5, partition: 0, replicas: [1, 2, 3], isr: [1, 2, 3], leader: 1, leaderEpoch: 4,
      partitionEpoch: 9),
    MetaPartition(
      topicID: 5, partition: 1, replicas: [2, 3, 1], isr: [2, 1], leader: 2, leaderEpoch: 3,
      partitionEpoch: 7),
  ])

private let answers: [Int32: ReplicaStatusClient.Answer] = [
  1: .answered(
    ReplicaStatusResponse(topics: [
      .init(
        name: "demo",
        partitions: [
          leaderStatus(
            0, highWatermark: 40, logEndOffset: 42,
            followers: [
              .init(brokerID: 2, logEndOffset: 40, lastCaughtUpMs: 1_000),
              .init(brokerID: 3, logEndOffset: 41, lastCaughtUpMs: -1),
            ]),
          followerStatus(1, logEndOffset: 17),
          .failure(partition: 2, .unknownTopicOrPartition, message: "no replica"),
        ])
    ])),
  2: .answered(
    ReplicaStatusResponse(topics: [
      .init(
        name: "demo",
        partitions: [
          followerStatus(0, logEndOffset: 40),
          leaderStatus(1, highWatermark: 17, logEndOffset: 18),
        ])
    ])),
  3: .unavailable("cannot connect to 127.0.0.1:9: connection refused"),
]

@Suite struct SBCtlReplicaOutputTests {
  @Test func healthMarkers() {
    let sorted = topic.partitions.sorted { $0.partition < $1.partition }
    #expect(
      sorted.map(PartitionHealth.marker) == ["ok", "under-replicated", "offline,under-replicated"])
    #expect(!PartitionHealth.isUnderReplicated(sorted[0]))
    #expect(PartitionHealth.isUnderReplicated(sorted[1]))
    #expect(PartitionHealth.isOffline(sorted[2]))
    // An ISR member that is not a replica does not make up for a missing one.
    let odd = MetaPartition(
      topicID: 1, partition: 0, replicas: [1, 2], isr: [1, 7], leader: 1, leaderEpoch: 0,
      partitionEpoch: 0)
    #expect(PartitionHealth.isUnderReplicated(odd))
  }

  @Test func reportsPairAssignmentsWithAnswers() {
    let reports = PartitionReport.build(topic: topic, answers: answers)
    #expect(reports.map(\.assignment.partition) == [0, 1, 2])
    #expect(reports[0].highWatermark == 40)
    #expect(reports[0].logEndOffset(of: 1) == 42)
    #expect(reports[0].logEndOffset(of: 2) == 40)
    #expect(reports[0].logEndOffset(of: 3) == nil)
    #expect(reports[0].leaderView(of: 3)?.logEndOffset == 41)
    #expect(reports[1].highWatermark == 17)
    // Offline: no leader, so no high watermark; broker 1 answered with an error.
    #expect(reports[2].highWatermark == nil)
    #expect(reports[2].replicas[1]?.errorText == "UNKNOWN_TOPIC_OR_PARTITION: no replica")
    // A broker whose answer lacks the partition is reported as missing it.
    let partial = PartitionReport.build(
      topic: topic, answers: [2: .answered(ReplicaStatusResponse(topics: []))])
    #expect(partial[0].replicas[2] == .missing("broker 2 does not host demo-0 yet"))
    #expect(partial[0].replicas[1] == .missing("broker 1 has no known address"))
  }

  @Test func leaderThatIsNotLeaderGivesNoHighWatermark() {
    let stale: [Int32: ReplicaStatusClient.Answer] = [
      1: .answered(
        ReplicaStatusResponse(topics: [
          .init(name: "demo", partitions: [followerStatus(0, logEndOffset: 3)])
        ]))
    ]
    #expect(PartitionReport.build(topic: topic, answers: stale)[0].highWatermark == nil)
  }

  @Test func describeTableMarksUnderReplicatedAndOffline() {
    let lines = TopicDescribeOutput.table(
      topic, PartitionReport.build(topic: topic, answers: answers))
    #expect(
      lines == [
        "Topic: demo  Partitions: 3  Configs: -  TopicID: 5",
        "PARTITION  LEADER  EPOCH  PARTITION-EPOCH  REPLICAS  ISR    ADDING  REMOVING  HW  LEO            STATUS",
        "0          1       4      9                1,2,3     1,2,3  -       -         40  1=42,2=40,3=-  ok",
        "1          2       3      7                2,3,1     2,1    -       -         17  2=18,3=-,1=17  under-replicated",
        "2          -1      6      11               3,1       3      -       -         -   3=-,1=-        offline,under-replicated",
        "Replicas without status (shown as -):",
        "  demo-0 on broker 3: cannot connect to 127.0.0.1:9: connection refused",
        "  demo-1 on broker 3: cannot connect to 127.0.0.1:9: connection refused",
        "  demo-2 on broker 3: cannot connect to 127.0.0.1:9: connection refused",
        "  demo-2 on broker 1: UNKNOWN_TOPIC_OR_PARTITION: no replica",
      ])
  }

  @Test func describeJSONHasOffsetsAndMarkers() throws {
    let parsed = try object(
      TopicDescribeOutput.json(topic, PartitionReport.build(topic: topic, answers: answers))
        .rendered())
    #expect(parsed["name"] as? String == "demo")
    let partitions = try #require(parsed["partitions"] as? [[String: Any]])
    #expect(partitions.map { $0["partition"] as? Int } == [0, 1, 2])
    #expect(partitions.map { $0["underReplicated"] as? Bool } == [false, true, true])
    #expect(partitions.map { $0["offline"] as? Bool } == [false, false, true])
    #expect(partitions[0]["highWatermark"] as? Int == 40)
    #expect(partitions[2]["highWatermark"] is NSNull)
    let states = try #require(partitions[0]["replicaStates"] as? [[String: Any]])
    #expect(states.map { $0["broker"] as? Int } == [1, 2, 3])
    #expect(states.map { $0["role"] as? String } == ["leader", "follower", nil])
    #expect(states.map { $0["logEndOffset"] as? Int } == [42, 40, nil])
    #expect(states[1]["leaderSeenLogEndOffset"] as? Int == 40)
    #expect(states[1]["lastCaughtUpMs"] as? Int == 1_000)
    #expect(states[2]["lastCaughtUpMs"] is NSNull)
    #expect(states[2]["inIsr"] as? Bool == true)
    #expect((states[2]["error"] as? String)?.contains("connection refused") == true)
    #expect(states[0]["error"] is NSNull)
  }

  @Test func clusterStatusNamesProblemPartitions() throws {
    let other = DescribeTopicResponse(
      name: "audit", topicID: 6, configs: [:],
      partitions: [
        MetaPartition(
          topicID: 6, partition: 0, replicas: [1], isr: [1], leader: 1, leaderEpoch: 0,
          partitionEpoch: 0)
      ])
    let problems = PartitionProblem.find(in: [topic, other])
    #expect(problems.map(\.name) == ["demo-1", "demo-2"])
    let brokers = [
      MetaBroker(
        brokerID: 2, incarnationID: 1, epoch: 7,
        endpoints: [MetaEndpoint(name: "client", host: "127.0.0.1", port: 9102)], rack: "r1",
        capacity: MetaBrokerCapacity(diskBytes: 0), fenced: true, inControlledShutdown: false),
      MetaBroker(
        brokerID: 1, incarnationID: 1, epoch: 5,
        endpoints: [MetaEndpoint(name: "client", host: "127.0.0.1", port: 9101)], rack: nil,
        capacity: MetaBrokerCapacity(diskBytes: 0), fenced: false, inControlledShutdown: true),
    ]
    let cluster = DescribeClusterResponse(
      clusterID: "c", leaderID: 1, metadataOffset: 3, brokers: brokers, topicCount: 2,
      partitionCount: 4, underReplicatedPartitionCount: 2, offlinePartitionCount: 1)
    #expect(
      ClusterOutput.table(cluster, problems: problems) == [
        "Cluster: c  Metadata leader: 1  Metadata offset: 3",
        "Brokers: 2 (1 fenced)  Topics: 2  Partitions: 4  Under-replicated: 2  Offline: 1",
        "ID  ADDRESS         RACK  FENCED  CONTROLLED-SHUTDOWN  EPOCH",
        "1   127.0.0.1:9101  -     no      yes                  5",
        "2   127.0.0.1:9102  r1    yes     no                   7",
        "PARTITION  STATUS                    LEADER  REPLICAS  ISR",
        "demo-1     under-replicated          2       2,3,1     2,1",
        "demo-2     offline,under-replicated  -1      3,1       3",
      ])
    #expect(
      ClusterOutput.table(cluster, problems: []).last
        == "No under-replicated or offline partitions")
    let parsed = try object(ClusterOutput.json(cluster, problems: problems).rendered())
    let underReplicated = try #require(parsed["underReplicated"] as? [[String: Any]])
    #expect(
      underReplicated.map { "\($0["topic"] ?? "")-\($0["partition"] ?? "")" } == [
        "demo-1", "demo-2",
      ])
    let offline = try #require(parsed["offline"] as? [[String: Any]])
    #expect(offline.map { $0["partition"] as? Int } == [2])
    #expect(offline.first?["isr"] as? [Int] == [3])
    let brokerObjects = try #require(parsed["brokers"] as? [[String: Any]])
    #expect(brokerObjects.map { $0["address"] as? String } == ["127.0.0.1:9101", "127.0.0.1:9102"])
    #expect(brokerObjects.map { $0["inControlledShutdown"] as? Bool } == [true, false])
  }

  @Test func demoTopicReadinessNamesWhatIsMissing() {
    let reports = PartitionReport.build(topic: topic, answers: answers)
    #expect(
      LocalBrokers.unservedReason(Array(reports[0...0]), topic: "demo")
        == "demo-0 on broker 3: cannot connect to 127.0.0.1:9: connection refused")
    #expect(
      LocalBrokers.unservedReason(Array(reports[2...2]), topic: "demo") == "demo-2 has no leader")
    let healthy = DescribeTopicResponse(
      name: "demo", topicID: 5, configs: [:],
      partitions: [
        MetaPartition(
          topicID: 5, partition: 0, replicas: [1, 2], isr: [1, 2], leader: 1, leaderEpoch: 4,
          partitionEpoch: 9)
      ])
    #expect(
      LocalBrokers.unservedReason(
        PartitionReport.build(topic: healthy, answers: answers), topic: "demo") == nil)
    #expect(LocalBrokers.demoReplicationFactor(brokerCount: 1) == 1)
    #expect(LocalBrokers.demoReplicationFactor(brokerCount: 5) == 3)
  }

  @Test func localUpParsesBrokerFlags() throws {
    let up = try #require(
      try SBCtl.parseAsRoot([
        "local", "up", "--dir", "/tmp/x", "--broker-option", "replica-lag-time-max-ms=500",
        "--no-demo-topic",
      ]) as? LocalUpCommand)
    #expect(up.brokers == 3)
    #expect(up.metaservers == 3)
    #expect(up.noDemoTopic)
    #expect(up.brokerOptions == ["replica-lag-time-max-ms=500"])
    #expect(throws: (any Error).self) {
      try SBCtl.parseAsRoot(["local", "up", "--dir", "/tmp/x", "--broker-option", "novalue"])
    }
    #expect(throws: (any Error).self) {
      try SBCtl.parseAsRoot(["local", "up", "--dir", "/tmp/x", "--brokers", "-1"])
    }
    let node = LocalNode(
      role: "broker", id: 2, pid: 0, raftAddress: nil, apiAddress: nil,
      clientAddress: "127.0.0.1:9002", httpAddress: nil, dataDir: "/d/broker-2/data",
      logFile: "/d/broker-2/broker.log", readyFile: "/d/broker-2/ready")
    let metaserver = LocalNode(
      role: "metaserver", id: 1, pid: 0, raftAddress: "127.0.0.1:1", apiAddress: "127.0.0.1:2",
      clientAddress: nil, httpAddress: "127.0.0.1:3", dataDir: "/d/m1", logFile: "/d/m1.log")
    let cluster = LocalCluster(
      metaservers: [metaserver], brokers: [node], metaserverOptions: [],
      brokerOptions: ["rack=r1"])
    #expect(
      LocalBrokers.arguments(node, in: cluster) == [
        "--metaservers", "127.0.0.1:2", "--broker-id", "2", "--data-dir", "/d/broker-2/data",
        "--listen", "127.0.0.1:9002", "--ready-file", "/d/broker-2/ready", "--rack", "r1",
      ])
    #expect(cluster.brokerList == "127.0.0.1:9002")
  }

  @Test func clusterDirGivesMetaserversAndBrokers() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "sbctl-cluster-dir-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let metaserver = LocalNode(
      role: "metaserver", id: 1, pid: 0, raftAddress: "127.0.0.1:1", apiAddress: "127.0.0.1:2",
      clientAddress: nil, httpAddress: "127.0.0.1:3", dataDir: "/d/m1", logFile: "/d/m1.log")
    let broker = LocalNode(
      role: "broker", id: 1, pid: 0, raftAddress: nil, apiAddress: nil,
      clientAddress: "127.0.0.1:9001", httpAddress: nil, dataDir: "/d/b1", logFile: "/d/b1.log",
      readyFile: "/d/b1.ready")
    try LocalCluster(metaservers: [metaserver], brokers: [broker], metaserverOptions: [])
      .save(to: directory)
    let environment = ["SB_METASERVERS": "other:1", "SB_BROKERS": "other:2"]

    let describe = try #require(
      try SBCtl.parseAsRoot(["topic", "describe", "demo", "--cluster-dir", directory.path])
        as? TopicDescribeCommand)
    guard
      case .metaservers(let configuration) = try describe.common.adminTarget(
        environment: environment)
    else {
      Issue.record("topic describe with --cluster-dir did not go to the metaservers")
      return
    }
    #expect(configuration.bootstrap.map(\.description) == ["127.0.0.1:2"])
    #expect(
      try describe.common.clientConfig(environment: environment).bootstrapBrokers.map(
        \.description) == ["127.0.0.1:9001"])

    // An explicit --metaservers still wins.
    let explicit = try #require(
      try SBCtl.parseAsRoot([
        "cluster", "status", "--cluster-dir", directory.path, "--metaservers", "h:5",
      ]) as? ClusterStatusCommand)
    #expect(
      try explicit.meta.clientConfiguration(environment: environment).bootstrap.map(
        \.description) == ["h:5"])
    let status = try #require(
      try SBCtl.parseAsRoot(["cluster", "status", "--cluster-dir", directory.path])
        as? ClusterStatusCommand)
    #expect(
      try status.meta.clientConfiguration(environment: environment).bootstrap.map(
        \.description) == ["127.0.0.1:2"])

    let missing = try #require(
      try SBCtl.parseAsRoot(["topic", "list", "--cluster-dir", directory.path + "-nope"])
        as? TopicListCommand)
    #expect(throws: (any Error).self) { try missing.common.adminTarget(environment: [:]) }
  }
}
