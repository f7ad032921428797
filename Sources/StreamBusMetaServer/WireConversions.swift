import StreamBusMetaProtocol
import StreamBusMetadata

// Field-for-field conversions between the wire structs (StreamBusMetaProtocol) and the
// domain model (StreamBusMetadata). Both modules name some types alike (the heartbeat and
// AlterPartition messages), hence the module-qualified names.

extension BrokerEndpoint {
  init(_ wire: MetaEndpoint) {
    self.init(name: wire.name, host: wire.host, port: wire.port)
  }
}

extension MetaEndpoint {
  init(_ endpoint: BrokerEndpoint) {
    self.init(name: endpoint.name, host: endpoint.host, port: endpoint.port)
  }
}

extension MetaBroker {
  init(_ broker: BrokerRegistration) {
    self.init(
      brokerID: broker.id, incarnationID: broker.incarnationID, epoch: broker.epoch,
      endpoints: broker.endpoints.map(MetaEndpoint.init), rack: broker.rack,
      capacity: MetaBrokerCapacity(diskBytes: broker.capacity.diskBytes), fenced: broker.fenced,
      inControlledShutdown: broker.inControlledShutdown)
  }
}

extension MetaPartition {
  init(_ partition: PartitionRegistration) {
    self.init(
      topicID: partition.topicID, partition: partition.partition, replicas: partition.replicas,
      isr: partition.isr, leader: partition.leader, leaderEpoch: partition.leaderEpoch,
      partitionEpoch: partition.partitionEpoch, addingReplicas: partition.addingReplicas,
      removingReplicas: partition.removingReplicas)
  }
}

extension BrokerRegistrationRequest {
  init(_ wire: BrokerRegisterRequest) {
    self.init(
      brokerID: wire.brokerID, incarnationID: wire.incarnationID,
      endpoints: wire.endpoints.map(BrokerEndpoint.init), rack: wire.rack,
      capacity: BrokerCapacity(diskBytes: wire.capacity.diskBytes), directoryID: wire.directoryID)
  }
}

extension StreamBusMetadata.BrokerHeartbeatRequest {
  init(_ wire: StreamBusMetaProtocol.BrokerHeartbeatRequest) {
    self.init(
      brokerID: wire.brokerID, brokerEpoch: wire.brokerEpoch,
      appliedMetadataOffset: wire.appliedMetadataOffset, wantShutdown: wire.wantShutdown)
  }
}

extension StreamBusMetadata.AlterPartitionRequest {
  init(_ wire: StreamBusMetaProtocol.AlterPartitionRequest) {
    self.init(
      brokerID: wire.brokerID, brokerEpoch: wire.brokerEpoch,
      partitions: wire.partitions.map {
        AlterPartitionItem(
          topicID: $0.topicID, partition: $0.partition, leaderEpoch: $0.leaderEpoch,
          partitionEpoch: $0.partitionEpoch, newISR: $0.newIsr)
      })
  }
}

extension StreamBusMetaProtocol.AlterPartitionResponse {
  init(_ response: StreamBusMetadata.AlterPartitionResponse) {
    self.init(
      partitions: response.partitions.map {
        Result(
          topicID: $0.topicID, partition: $0.partition, errorCode: $0.errorCode,
          leader: $0.leader, leaderEpoch: $0.leaderEpoch, isr: $0.isr,
          partitionEpoch: $0.partitionEpoch)
      })
  }
}

extension MetaCreateTopicsResponse.Result {
  init(_ result: CreateTopicResult) {
    self.init(
      name: result.name, errorCode: result.errorCode, errorMessage: result.message,
      topicID: result.topicID, partitions: result.partitions,
      replicationFactor: result.replicationFactor)
  }
}
