import StreamBusProtocol

extension RequestRouter {
  /// A fresh producer id with epoch 0; transactions are not supported.
  func initProducerId(_ request: InitProducerIdRequest) async -> InitProducerIdResponse {
    guard request.transactionalId == nil else {
      return InitProducerIdResponse(errorCode: .invalidRequest, producerId: -1, producerEpoch: -1)
    }
    do {
      let producerId = try await producerIdSource.nextProducerId()
      return InitProducerIdResponse(errorCode: .none, producerId: producerId, producerEpoch: 0)
    } catch {
      logger.warning("InitProducerId failed", metadata: ["error": "\(error)"])
      return InitProducerIdResponse(errorCode: error.errorCode, producerId: -1, producerEpoch: -1)
    }
  }
}
