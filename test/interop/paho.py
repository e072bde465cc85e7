#!/usr/bin/env python3
"""Run Eclipse Paho's MQTT 3.1.1 interoperability client tests against a broker.

The suite (eclipse/paho.mqtt.testing, interoperability/client_test.py) is not
part of this repository: fetch it yourself and pass its interoperability/
directory. Its own command line clashes with unittest's, so this runner sets
the module's globals and runs its test case directly.

  python3 test/interop/paho.py PAHO_INTEROP_DIR HOST PORT NOSUBSCRIBE_FILTER
"""
import sys
import unittest

if len(sys.argv) != 5:
    print(__doc__)
    sys.exit(2)
interop_dir, host, port, nosub = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, interop_dir)
sys.argv = sys.argv[:1]
import client_test  # noqa: E402

client_test.host = host
client_test.port = port
client_test.topics = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
client_test.wildtopics = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
client_test.nosubscribe_topics = (nosub,)

suite = unittest.defaultTestLoader.loadTestsFromTestCase(client_test.Test)
result = unittest.TextTestRunner(verbosity=2).run(suite)
print(f"paho interoperability: {result.testsRun - len(result.failures) - len(result.errors)} of {result.testsRun} passed")
sys.exit(0 if result.wasSuccessful() else 1)
