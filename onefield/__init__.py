"""onefield: one application for neural fields.

The sub-packages live in the repository's top-level folders (``app/ fields/ renderers/ cuda_ext/
scenes/``) and are mapped to ``onefield.<folder>`` by setup.py; this folder only holds the
package root.
"""

import pkgutil

# A checkout on sys.path (e.g. pytest run from the repository root) must not hide the installed
# sub-packages: let ``onefield`` span every ``onefield`` directory found on the path.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
