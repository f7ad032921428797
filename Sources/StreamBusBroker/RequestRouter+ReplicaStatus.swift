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
    guard let replica = replicaManager.replica(TopicPartition(topic: topic, partition: partition))
    else {
      return .failure(
        partition: partition, .unknownTopicOrPartition,
        message: "this broker hosts no replica of \(topic)-\(partition)")
    }
    let state = await replica.replicationState()
    let role: ReplicaStatusRole
    switch state.role {
    case .standaloneLeader: role = .standalone
    case .leader: role = .leader
    case .follower: role = .follower
    }
    return ReplicaStatusResponse.Partition(
      partition: partition, role: role, leaderEpoch: state.leaderEpoch,
      partitionEpoch: state.partitionEpoch, isr: state.isr,
      logStartOffset: state.logStartOffset, highWatermark: state.highWatermark,
      logEndOffset: state.logEndOffset, durableEndOffset: state.durableEndOffset,
      followers: state.followers,
      replicationLag: state.replicationLag)
  }
}
