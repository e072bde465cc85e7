import { createLogger } from '../../shared/log.js'
import { answersContract } from './contract-answers.js'
import { chatContract, type Start } from './contract.js'
import { mqtt5Contract } from './contract-mqtt5.js'
import { startNode } from '../helpers/test-node.js'

const start: Start = async (users) => {
  // The node's warnings and errors, kept for the tests that read them (and shown with WARBLER_TEST_LOG).
  const lines: string[] = []
  const log = createLogger('warn', (l) => {
    lines.push(l.trimEnd())
    if (process.env.WARBLER_TEST_LOG !== undefined) process.stderr.write(l)
  })
  const node = await startNode(['--publish-rate', '0'], { users, log })
  return {
    mqttUrl: node.mqttUrl,
    dataDir: node.dataDir,
    logLines: () => lines,
    metrics: async () => await (await fetch(`${node.httpUrl}/metrics`)).text(),
    close: () => node.close()
  }
}

chatContract('embedded', start)
answersContract('embedded', start)
mqtt5Contract('embedded', start)
