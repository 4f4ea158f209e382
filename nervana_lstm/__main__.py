import sys

from nervana_lstm.cli import main

sys.exit(main())
