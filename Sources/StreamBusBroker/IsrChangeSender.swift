import Logging
import NIOConcurrencyHelpers
import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol

/// Sends the ISR changes the led partitions propose to the controller, batched into one
/// AlterPartition per maintenance tick, and hands each partition its result.
///
/// Each replica keeps at most one proposal in flight (it proposes again only after
/// `isrChangeCompleted`), so batches of consecutive ticks never carry the same partition.
final class IsrChangeSender: Sendable {
  private let brokerID: Int32
  private let client: MetaClient
  private let brokerEpoch: @Sendable () async -> Int64
  private let replicaLagTimeMaxMs: Int64
  private let logger: Logger
  private let inFlight = NIOLockedValueBox<Task<Void, Never>?>(nil)

  init(
    brokerID: Int32, client: MetaClient, brokerEpoch: @escaping @Sendable () async -> Int64,
    replicaLagTimeMaxMs: Int64, logger: Logger
  ) {
    self.brokerID = brokerID
    self.client = client
    self.brokerEpoch = brokerEpoch
    self.replicaLagTimeMaxMs = replicaLagTimeMaxMs
    self.logger = logger
  }

  /// Collects the proposals of `replicas` and sends them without waiting for the answer.
  func tick(replicas: [PartitionReplica], nowMs: Int64) async {
    var proposals: [(PartitionReplica, IsrChangeProposal)] = []
    for replica in replicas {
      if let proposal = await replica.isrChangeProposal(
        nowMs: nowMs, replicaLagTimeMaxMs: replicaLagTimeMaxMs)
      {
        proposals.append((replica, proposal))
      }
    }
    guard !proposals.isEmpty else { return }
    let task = Task { await self.send(proposals) }
    inFlight.withLockedValue { $0 = task }
  }

  /// Waits for the batch in flight (shutdown).
  func drain() async {
    await inFlight.withLockedValue { $0 }?.value
  }

  private func send(_ proposals: [(PartitionReplica, IsrChangeProposal)]) async {
    let request = AlterPartitionRequest(
      brokerID: brokerID, brokerEpoch: await brokerEpoch(),
      partitions: proposals.map { _, proposal in
        AlterPartitionRequest.Item(
          topicID: proposal.topicID, partition: proposal.partition,
          leaderEpoch: proposal.leaderEpoch, partitionEpoch: proposal.partitionEpoch,
          newIsr: proposal.newIsr)
      })
    let response: AlterPartitionResponse
    do {
      response = try await client.alterPartition(request)
    } catch {
      logger.warning(
        "AlterPartition failed; the replicas propose again", metadata: ["error": "\(error)"])
      let code = ClusterMetadataView.errorCode(of: error)
      for (replica, _) in proposals {
        await replica.isrChangeCompleted(newIsr: nil, partitionEpoch: nil, error: code)
      }
      return
    }
    for (replica, proposal) in proposals {
      guard
        let result = response.partitions.first(where: {
          $0.topicID == proposal.topicID && $0.partition == proposal.partition
        })
      else {
        await replica.isrChangeCompleted(
          newIsr: nil, partitionEpoch: nil, error: .unknownServerError)
        continue
      }
      // The replica logs the proposal and its outcome.
      if result.errorCode == .none {
        await replica.isrChangeCompleted(
          newIsr: result.isr, partitionEpoch: result.partitionEpoch, error: .none)
      } else {
        await replica.isrChangeCompleted(
          newIsr: nil, partitionEpoch: nil, error: result.errorCode)
      }
    }
  }
}
