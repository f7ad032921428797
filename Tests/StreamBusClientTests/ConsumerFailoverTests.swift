import StreamBusProtocol
import StreamBusRecords
import Testing

@testable import StreamBusClient

@Suite(.timeLimit(.minutes(1))) struct ConsumerFailoverTests {
  @Test func fetchFromACutOffLeaderIsGivenUpOnceMetadataNamesItsSuccessor() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("cutoff", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      try await producer.send(topic: "cutoff", value: Array("a".utf8), partition: 0)
      var config = harness.clientConfig()
      // Far beyond the test's own bound: only leaving the old leader can end the fetch.
      config.requestTimeoutMs = 600_000
      let consumer = Consumer(config: config)
      let partition = TopicPartition(topic: "cutoff", partition: 0)
      await consumer.assign([partition])
      #expect(try await consumer.poll(maxWaitMs: 200).map(\.offset) == [0])

      // Broker 1 stops answering fetches; the controller moves the leadership.
      harness.cluster.withState { $0.holdFetchOnBrokers = [1] }
      harness.cluster.moveLeader(topic: "cutoff", partition: 0, to: 2)
      try await producer.send(topic: "cutoff", value: Array("b".utf8), partition: 0)
      // Leaving broker 1 takes about a second when it works.
      let polled = try await resultWithin(
        seconds: 20, release: { harness.cluster.withState { $0.holdFetchOnBrokers = [] } }
      ) {
        var records: [ConsumerRecord] = []
        for _ in 0..<100 where records.isEmpty {
          records = try await consumer.poll(maxWaitMs: 100)
        }
        return records
      }
      harness.cluster.withState { $0.holdFetchOnBrokers = [] }
      await consumer.close()
      await producer.close()
      let records = try #require(polled, "the poll still waited for the cut-off leader")
      #expect(records.map(\.offset) == [1])
      #expect(records.map(\.value) == [Array("b".utf8)])
    }
  }

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

@Suite(.timeLimit(.minutes(1))) struct LeaderFailoverTests {
  @Test func consumerGoesToTheNewLeaderWithoutWaitingOutTheBackoff() async throws {
    try await withFakeCluster(brokers: 2) { harness in
      harness.cluster.createTopic("hop", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      try await producer.send(topic: "hop", value: [0], partition: 0)
      var config = harness.clientConfig()
      config.retryBackoffMs = 10_000
      config.retryBackoffMaxMs = 10_000
      let consumer = Consumer(config: config)
      await consumer.assign([TopicPartition(topic: "hop", partition: 0)])
      #expect(try await consumer.poll(maxWaitMs: 200).map(\.offset) == [0])
      harness.cluster.moveLeader(topic: "hop", partition: 0, to: 2)
      try await producer.send(topic: "hop", value: [1], partition: 0)
      let started = ContinuousClock.now
      var records: [ConsumerRecord] = []
      for _ in 0..<3 where records.isEmpty {
        records = try await consumer.poll(maxWaitMs: 100)
      }
      #expect(records.map(\.offset) == [1])
      // Well below the 8-12 s backoff (even on a loaded machine).
      #expect(ContinuousClock.now - started < .seconds(5))
      await consumer.close()
      await producer.close()
    }
  }

  @Test func consumerBacksOffWhileTheLeaderStaysTheSame() async throws {
    try await withFakeCluster { harness in
      harness.cluster.createTopic("same", partitions: 1, leaders: [1])
      var config = harness.clientConfig()
      config.retryBackoffMs = 300
      config.retryBackoffMaxMs = 300
      let consumer = Consumer(config: config)
      await consumer.assign([TopicPartition(topic: "same", partition: 0)])
      _ = try await consumer.poll(maxWaitMs: 10)
      harness.cluster.withState { $0.fetchConnectionDrops = 1 }
      let started = ContinuousClock.now
      #expect(try await consumer.poll(maxWaitMs: 10).isEmpty)
      #expect(ContinuousClock.now - started >= .milliseconds(240))
      await consumer.close()
    }
  }

  @Test func deadLeaderCostsRetriesNotFailures() async throws {
    try await withFakeCluster(brokers: 3) { harness in
      harness.cluster.createTopic("failover", partitions: 1, leaders: [1])
      let producer = Producer(config: harness.clientConfig())
      let consumer = Consumer(config: harness.clientConfig())
      let partition = TopicPartition(topic: "failover", partition: 0)
      await consumer.assign([partition])
      try await producer.send(topic: "failover", value: [0])
      #expect(try await consumer.poll(maxWaitMs: 200).map(\.offset) == [0])

      // The leader (also the only bootstrap broker) dies with records queued; a moment
      // later broker 3 takes over. Metadata now comes from the brokers learned before.
      await harness.brokers[0].stop()
      var handles: [DeliveryHandle] = []
      for index in 1...20 {
        handles.append(try await producer.enqueue(topic: "failover", value: [UInt8(index)]))
      }
      try await Task.sleep(for: .milliseconds(100))
      harness.cluster.moveLeader(topic: "failover", partition: 0, to: 3)
      for (index, handle) in handles.enumerated() {
        #expect(try await handle.value().offset == Int64(index + 1))
      }
      let stored = try harness.cluster.records(topic: "failover", partition: 0)
      #expect(stored.map(\.value) == (0...20).map { [UInt8($0)] })
      let sequences = try harness.cluster.batchHeaders(topic: "failover", partition: 0).map {
        ($0.baseSequence, $0.recordCount)
      }
      var expected: Int32 = 0
      for (base, count) in sequences {
        #expect(base == expected)
        expected += count
      }
      #expect(expected == 21)

      var consumed: [ConsumerRecord] = []
      for _ in 0..<40 where consumed.count < 20 {
        consumed += try await consumer.poll(maxWaitMs: 100)
      }
      #expect(consumed.map(\.offset) == Array(1...20))
      #expect(!harness.cluster.requests(.fetch, broker: 3).isEmpty)
      await consumer.close()
      await producer.close()
    }
  }
}
