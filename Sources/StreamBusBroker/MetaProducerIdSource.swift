import Logging
import StreamBusMetaClient

/// Producer ids for InitProducerId in cluster mode: blocks allocated by the controller
/// (AllocateProducerIds), handed out one by one; a new block is fetched when one runs out.
/// Ids of a block not used before a restart are simply lost (the controller never hands a
/// block out twice).
actor MetaProducerIdSource: ProducerIdSource {
  private let brokerID: Int32
  private let client: MetaClient
  private let brokerEpoch: @Sendable () async -> Int64
  private let logger: Logger
  private var next: Int64 = 0
  private var end: Int64 = 0
  /// The allocation in flight, shared by every caller that found the block empty.
  private var allocation: Task<Result<Range<Int64>, BrokerRequestError>, Never>?

  init(
    brokerID: Int32, client: MetaClient, brokerEpoch: @escaping @Sendable () async -> Int64,
    logger: Logger
  ) {
    self.brokerID = brokerID
    self.client = client
    self.brokerEpoch = brokerEpoch
    self.logger = logger
  }

  func nextProducerId() async throws(BrokerRequestError) -> Int64 {
    while next >= end {
      let task: Task<Result<Range<Int64>, BrokerRequestError>, Never>
      if let allocation {
        task = allocation
      } else {
        let client = client
        let brokerID = brokerID
        let brokerEpoch = brokerEpoch
        task = Task {
          do {
            let response = try await client.allocateProducerIds(
              brokerID: brokerID, brokerEpoch: await brokerEpoch())
            guard response.count > 0, response.firstProducerID >= 0 else {
              return .failure(
                BrokerRequestError(
                  .unknownServerError,
                  "the controller returned an empty producer id block"))
            }
            return .success(
              response.firstProducerID..<response.firstProducerID + Int64(response.count))
          } catch {
            return .failure(
              BrokerRequestError(
                ClusterMetadataView.errorCode(of: error),
                "cannot allocate producer ids from the metaservers: \(error)"))
          }
        }
        allocation = task
      }
      let result = await task.value
      if allocation == task {
        allocation = nil
      }
      switch result {
      case .success(let block):
        if block.lowerBound >= end {
          logger.info("allocated producer ids \(block.lowerBound)..<\(block.upperBound)")
          next = block.lowerBound
          end = block.upperBound
        }
      case .failure(let error):
        throw error
      }
    }
    defer { next += 1 }
    return next
  }
}
