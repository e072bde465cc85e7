import { chatContract } from './contract.js'
import { startNode } from '../helpers/warbler.js'

chatContract('embedded', async (users) => {
  const node = await startNode(['--publish-rate', '0'], { users })
  return { mqttUrl: node.mqttUrl, close: () => node.close() }
})
