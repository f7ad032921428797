import StreamBusProtocol
import StreamBusRecords
import Testing

@testable import StreamBusClient

@Suite(.timeLimit(.minutes(1))) struct ConsumerFailoverTests {
  @Test func pollRidesOutAClusterThatAnswersNothingThenFollowsTheNewLeader() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("outage", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      try await producer.send(topic: "outage", value: Array("a".utf8), partition: 0)
      let consumer = Consumer(config: harness.clientConfig())
      let partition = TopicPartition(topic: "outage", partition: 0)
      await consumer.assign([partition])
      #expect(try await consumer.poll(maxWaitMs: 200).map(\.offset) == [0])

      // Every broker drops every connection: fetch and metadata fail, poll does not throw.
      harness.cluster.withState { $0.dropAll = true }
      let servedBefore = harness.cluster.withState { $0.log.count }
      for _ in 0..<4 {
        #expect(try await consumer.poll(maxWaitMs: 50).isEmpty)
      }
      #expect(await consumer.position(of: partition) == 1)
      harness.cluster.withState { $0.dropAll = false }
      #expect(harness.cluster.withState { $0.log.count } == servedBefore)

      // The partition moved meanwhile (a failover): the consumer continues on the new leader
      // at its position, sending the new leader epoch.
      harness.cluster.moveLeader(topic: "outage", partition: 0, to: 2)
      try await producer.send(topic: "outage", value: Array("b".utf8), partition: 0)
      var records: [ConsumerRecord] = []
      for _ in 0..<20 where records.isEmpty {
        records = try await consumer.poll(maxWaitMs: 100)
      }
      #expect(records.map(\.offset) == [1])
      #expect(records.map(\.value) == [Array("b".utf8)])
      let fetch = try #require(
        harness.cluster.requests(.fetch, broker: 2).compactMap { request -> FetchRequest? in
          if case .fetch(let body) = request { return body }
          return nil
        }.last)
      #expect(fetch.topics[0].partitions[0].currentLeaderEpoch == 1)
      #expect(fetch.topics[0].partitions[0].fetchOffset == 1)
      await consumer.close()
      await producer.close()
    }
  }
}
