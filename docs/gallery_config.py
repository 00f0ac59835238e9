"""Order of the gallery examples (sphinx-gallery's ``within_subsection_order``).

The gallery tells a story: first steps, then each way of using the package,
then the paper's figures in the paper's order.  Examples not listed here
(a new one, before it is placed) come after the listed ones, by file name.
"""

EXAMPLE_ORDER = [
    # examples/: Using sklearn_ntk
    "plot_first_steps.py",
    "plot_kernels_in_svr_gpr.py",
    "plot_gridsearch_depth_t.py",
    "plot_uncertainty.py",
    "plot_ntk_classifier.py",
    "plot_log_loss_classifier.py",
    "plot_random_features_large_data.py",
    # examples/jacot2018/: Reproducing Jacot et al. (2018)
    "plot_figure1_ntk_at_initialisation_and_after_training.py",
    "plot_figure2_trained_networks_against_the_limiting_gaussian.py",
    "plot_figure3_convergence_along_kernel_principal_components.py",
]


class ExampleOrder:
    """Sort key of an example file name: its place in ``EXAMPLE_ORDER``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in EXAMPLE_ORDER:
            return (EXAMPLE_ORDER.index(filename), filename)
        return (len(EXAMPLE_ORDER), filename)

    def __repr__(self):
        # Sphinx compares configurations by their repr to decide on rebuilds.
        return f"<{type(self).__name__}: {', '.join(EXAMPLE_ORDER)}>"
