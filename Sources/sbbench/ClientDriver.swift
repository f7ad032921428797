import ArgumentParser
import Foundation
import StreamBusClient
import StreamBusTransport

/// Which code path sends the records.
enum DriverOption: String, ExpressibleByArgument, CaseIterable, Sendable {
  /// The StreamBusClient `Producer`/`Consumer`: what applications get.
  case client
  /// Pre-encoded batches over raw connections: the broker alone, client cost near zero.
  case raw
}

/// Producer runs through `StreamBusClient.Producer`: records are enqueued one by one and the
/// library batches them (`lingerMs`, `batchBytes`).
struct ClientProduceRun {
  static let pacingSleepMin = Duration.milliseconds(1)
  var address: String
  var topic: String
  var recordBytes: Int
  var acks: ProducerConfig.Acks
  var lingerMs: Int64
  var batchBytes: Int
  var inflightRequestsMax: Int
  /// The producer's bufferBytesMax: bounds records enqueued and not yet acknowledged.
  var bufferBytesMax: Int
  var rate: Int?
  var budget: WorkBudget

  func run() async throws -> LaneOutcome {
    var config = ClientConfig(
      bootstrapBrokers: [try HostPort(parsing: address)], clientId: "sbbench")
    config.requestTimeoutMs = 60_000
    var producerConfig = ProducerConfig(acks: acks)
    producerConfig.lingerMs = lingerMs
    producerConfig.batchBytes = batchBytes
    producerConfig.inflightRequestsMax = inflightRequestsMax
    producerConfig.bufferBytesMax = max(bufferBytesMax, batchBytes * 4)
    producerConfig.requestBytesMax = max(producerConfig.requestBytesMax, batchBytes + 4096)
    let producer = Producer(config: config, producerConfig: producerConfig)
    let value = recordValue(bytes: recordBytes, seed: 1)
    let outcome: LaneOutcome
    if let rate {
      outcome = try await scheduled(producer: producer, value: value, recordsPerSecond: rate)
    } else {
      outcome = try await closedLoop(producer: producer, value: value)
    }
    await producer.close()
    return outcome
  }

  private func closedLoop(producer: Producer, value: [UInt8]) async throws -> LaneOutcome {
    // Acknowledgements are awaited in a second task, oldest first, so the sender never
    // blocks on one record. The producer's bufferBytesMax bounds what is outstanding (enqueue
    // suspends when it is full), so no window of our own is needed: one would add two actor
    // hops per record to the measurement.
    let (stream, sink) = AsyncStream.makeStream(
      of: (DeliveryHandle, ContinuousClock.Instant).self)
    let collector = Task { () -> LaneOutcome in
      var outcome = LaneOutcome()
      for await (handle, sentAt) in stream {
        switch await handle.result() {
        case .success:
          outcome.records += 1
          outcome.latencies.record(ContinuousClock.now - sentAt)
        case .failure(let error):
          outcome.errors += 1
          outcome.firstError = outcome.firstError ?? "\(error)"
        }
      }
      return outcome
    }
    while budget.claim(1) == 1 {
      let sentAt = ContinuousClock.now
      let handle = try await producer.enqueue(topic: topic, value: value)
      sink.yield((handle, sentAt))
    }
    sink.finish()
    await producer.flush()
    return await collector.value
  }

  private func scheduled(
    producer: Producer, value: [UInt8], recordsPerSecond: Int
  ) async throws -> LaneOutcome {
    let (stream, sink) = AsyncStream.makeStream(
      of: (DeliveryHandle, ContinuousClock.Instant).self)
    let collector = Task { () -> LaneOutcome in
      var outcome = LaneOutcome()
      for await (handle, intended) in stream {
        switch await handle.result() {
        case .success:
          outcome.records += 1
          outcome.latencies.record(ContinuousClock.now - intended)
        case .failure(let error):
          outcome.errors += 1
          outcome.firstError = outcome.firstError ?? "\(error)"
        }
      }
      return outcome
    }
    let intervalNanoseconds = 1e9 / Double(recordsPerSecond)
    let start = ContinuousClock.now
    var sequence = 0
    while true {
      let intended = start + .nanoseconds(Int64(Double(sequence) * intervalNanoseconds))
      sequence += 1
      // A sleep lasts at least `pacingSleepMin`: a timer per record (every 17 µs at 58k
      // records/s) cost the load generator more CPU than the producer itself, taken from
      // the brokers it measures on the same machine. The records that fell due meanwhile
      // go out together, late rather than early: latency counts from each record's
      // intended send time, so it includes the delay.
      let now = ContinuousClock.now
      if intended > now {
        try await Task.sleep(
          until: max(intended, now + Self.pacingSleepMin), clock: .continuous)
      }
      guard budget.claim(1) == 1 else { break }
      let handle = try await producer.enqueue(topic: topic, value: value)
      sink.yield((handle, intended))
    }
    sink.finish()
    await producer.flush()
    return await collector.value
  }
}

/// Consumer runs through `StreamBusClient.Consumer`, all partitions assigned to one consumer.
func consumeWithClient(
  address: String, topic: String, expectedRecords: Int?, recordBytes: Int
) async throws -> (records: Int, payloadBytes: Int, polls: Int) {
  let config = ClientConfig(
    bootstrapBrokers: [try HostPort(parsing: address)], clientId: "sbbench-consumer")
  let consumer = Consumer(config: config)
  let partitions = try await consumer.partitions(of: topic)
  await consumer.assign(partitions)
  try await consumer.seekAll(to: .earliest)
  var records = 0
  var payloadBytes = 0
  var polls = 0
  var emptyPolls = 0
  while expectedRecords.map({ records < $0 }) ?? true {
    let batch = try await consumer.poll(maxWaitMs: 200)
    polls += 1
    if batch.isEmpty {
      emptyPolls += 1
      if expectedRecords == nil || emptyPolls >= 10 { break }
      continue
    }
    emptyPolls = 0
    records += batch.count
    for record in batch { payloadBytes += record.value?.count ?? 0 }
  }
  await consumer.close()
  return (records, payloadBytes, polls)
}
