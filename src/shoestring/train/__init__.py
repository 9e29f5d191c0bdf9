"""Training: typed config, engine, hooks, checkpoints, budgets and recipes.

``shoestring.train`` is both this package and the function
:func:`shoestring.train.api.train`: ``from shoestring import train`` gives the
package (Python's import system prefers a submodule of that name), so the
package itself is callable and forwards to the function, and
``train(config)`` works however it was imported.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from shoestring.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
