import StreamBusProtocol
import Testing

@testable import StreamBusClient

@Suite struct MetadataMergeTests {
  private func answer(
    brokers: [Int32], topics: [(String, [(leader: Int32, epoch: Int32)])]
  ) -> ClusterMetadata {
    ClusterMetadata(
      response: MetadataResponse(
        brokers: brokers.map {
          MetadataResponse.Broker(nodeId: $0, host: "127.0.0.1", port: 9000 + $0)
        },
        clusterId: "c", controllerId: -1,
        topics: topics.map { name, partitions in
          MetadataResponse.Topic(
            errorCode: .none, name: name,
            partitions: partitions.enumerated().map { index, partition in
              MetadataResponse.Partition(
                errorCode: .none, partition: Int32(index), leaderId: partition.leader,
                leaderEpoch: partition.epoch, replicas: [1, 2, 3], isr: [1, 2, 3],
                offlineReplicas: [])
            }, configs: [])
        }),
      fetchedAt: .now)
  }

  @Test func lowerLeaderEpochFromALaggingBrokerIsIgnored() {
    let cached = answer(brokers: [1, 2, 3], topics: [("t", [(2, 5), (3, 1)])])
    let lagging = answer(brokers: [1, 2, 3], topics: [("t", [(1, 4), (1, 2)])])
    let merged = lagging.keepingNewerLeaders(from: cached)
    let partitions = merged.topics["t"]?.partitions ?? []
    #expect(partitions.map(\.leaderId) == [2, 1])
    #expect(partitions.map(\.leaderEpoch) == [5, 2])
    #expect(
      merged.leader(of: TopicPartition(topic: "t", partition: 0))?.broker.address.port == 9002)
  }

  @Test func cachedLeaderMissingFromTheAnswerIsNotKept() {
    let cached = answer(brokers: [1, 2, 3], topics: [("t", [(2, 5)])])
    let withoutTwo = answer(brokers: [1, 3], topics: [("t", [(1, 4)])])
    #expect(withoutTwo.keepingNewerLeaders(from: cached).topics["t"]?.partitions[0].leaderId == 1)
  }

  @Test func recreatedOrResizedTopicsStartOver() {
    let cached = answer(brokers: [1, 2], topics: [("t", [(2, 5)]), ("u", [(2, 3)])])
    // "t" now has two partitions; "u" disappeared (deleted), then came back at epoch 0.
    let resized = answer(brokers: [1, 2], topics: [("t", [(1, 0), (1, 0)])])
    let merged = resized.keepingNewerLeaders(from: cached)
    #expect(merged.topics["t"]?.partitions.map(\.leaderId) == [1, 1])
    #expect(merged.topics["u"] == nil)
    let recreated = answer(brokers: [1, 2], topics: [("u", [(1, 0)])])
    #expect(recreated.keepingNewerLeaders(from: merged).topics["u"]?.partitions[0].leaderId == 1)
  }
}
