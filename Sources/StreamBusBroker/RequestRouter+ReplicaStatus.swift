import StreamBusProtocol

extension RequestRouter {
  /// ReplicaStatus: this broker's view of the replicas it hosts (for `sbctl topic describe`).
  /// It reads state only; an unknown topic or partition is reported per partition.
  func replicaStatus(_ request: ReplicaStatusRequest) async -> ReplicaStatusResponse {
    var selections = request.topics
    if selections.isEmpty {
      selections = replicaManager.allTopics().map { ReplicaStatusRequest.Topic(name: $0.name) }
    }
    var topics: [ReplicaStatusResponse.Topic] = []
    topics.reserveCapacity(selections.count)
    for selection in selections {
      var partitionNumbers = selection.partitions
      if partitionNumbers.isEmpty {
        partitionNumbers = hostedPartitions(of: selection.name)
      }
      var partitions: [ReplicaStatusResponse.Partition] = []
      partitions.reserveCapacity(partitionNumbers.count)
      for partition in partitionNumbers {
        partitions.append(await replicaStatus(topic: selection.name, partition: partition))
      }
      topics.append(ReplicaStatusResponse.Topic(name: selection.name, partitions: partitions))
    }
    return ReplicaStatusResponse(topics: topics)
  }

  /// The partitions of `topic` with a replica on this broker, in order.
  private func hostedPartitions(of topic: String) -> [Int32] {
    replicaManager.allReplicas().map(\.topicPartition).filter { $0.topic == topic }
      .map(\.partition).sorted()
  }

  private func replicaStatus(topic: String, partition: Int32) async
    -> ReplicaStatusResponse.Partition
  {
    let topicPartition = TopicPartition(topic: topic, partition: partition)
    guard let replica = replicaManager.replica(topicPartition),
      let offsets = await replica.offsets()
    else {
      return .failure(
        partition: partition, .unknownTopicOrPartition,
        message: "this broker hosts no replica of \(topic)-\(partition)")
    }
    return ReplicaStatusResponse.Partition(
      partition: partition, role: .standalone, leaderEpoch: replica.leaderEpoch,
      partitionEpoch: 0, isr: [], logStartOffset: offsets.logStartOffset,
      highWatermark: offsets.highWatermark, logEndOffset: offsets.logEndOffset,
      durableEndOffset: offsets.highWatermark)
  }
}
