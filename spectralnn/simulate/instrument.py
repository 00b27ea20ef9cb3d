"""
Instrument model: survey wavelength grids, resolution, sky, noise, bad pixels.

`observe` turns noiseless observed-frame model spectra into what a
fibre spectrograph delivers: Galactic reddening, the line-spread function,
flux-calibration wiggles, sky-subtraction residuals, Poisson + read noise with
an inverse variance that matches the noise actually drawn, and bad pixels.

Survey parameters (`SURVEYS`) are approximate public numbers, good enough to
give simulated spectra the right sampling, resolution and S/N behaviour; they
are not a calibration of any instrument:

* SDSS: 2.5 m telescope, 3″ fibres, 3×15 min, 3800–9200 Å, log10 step 1e-4,
  R ≈ 1850–2200 (York et al. 2000, AJ 120, 1579).
* BOSS: 2″ fibres, 4×15 min, 3600–10400 Å, log10 step 1e-4, R ≈ 1560–2270
  (blue) and 1850–2650 (red) (Smee et al. 2013, AJ 146, 32).
* DESI: 4 m Mayall, 1.5″ fibres, 1000 s, B/R/Z arms merged on one linear
  0.8 Å grid 3600–9824 Å, R ≈ 2000–5500 (DESI Collaboration 2022, AJ 164,
  207).
* 4MOST low-resolution spectrograph: 4.1 m VISTA, 1.45″ fibres, 1200 s,
  3700–9500 Å, R ≈ 4000–7500 (de Jong et al. 2019, Msngr 175, 3); a linear
  0.5 Å grid is used here (the official product sampling may differ).

Sky lines are the bright night-sky emission lines of Osterbrock et al. (1996,
PASP 108, 277; O I, Na I D, OH Meinel bands) and the Hg I street-lamp lines,
converted from air to vacuum with the Morton (2000) formula; their strengths
are rough relative values, not a sky template.

Examples
--------
>>> import numpy as np
>>> from spectralnn.simulate import SURVEYS, survey_grid, observe
>>> wave = survey_grid("SDSS")
>>> wave.size, SURVEYS["SDSS"].grid
(3840, 'log10')
>>> flux = np.full((2, wave.size), 5.0)
>>> obs, ivar, mask = observe(wave, flux, survey="SDSS", snr=10.0, rng=1)
>>> obs.shape, bool(np.all(ivar[mask] == 0))
((2, 3840), True)
"""

from dataclasses import dataclass

import numpy as np

from ..errors import WavelengthCoverageError
from .photometry import synthetic_photometry

__all__ = ["Survey", "SURVEYS", "SKY_LINES", "survey_grid", "observe", "as_generators"]

_H_C = 1.98644586e-8  # h c in erg Å
_FWHM_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
_LOG_STEP_ALIGN = 1e-4


@dataclass(frozen=True)
class Survey:
    """
    A spectroscopic survey's wavelength grid, resolution and noise budget.

    Parameters
    ----------
    name : str
        Survey name (key of `SURVEYS`).
    wave_min, wave_max : float
        Wavelength range in Å (vacuum).
    grid : {'log10', 'linear'}
        Pixel spacing type.
    step : float
        Pixel step: in log10(λ) for ``'log10'``, in Å for ``'linear'``.
    resolution_wave, resolution : tuple of float
        Anchor wavelengths (Å) and spectral resolution R = λ/Δλ_FWHM there;
        R(λ) is interpolated linearly between anchors (constant beyond).
    area : float
        Effective collecting area in cm².
    exptime : float
        Total exposure time in s.
    throughput : float
        Peak end-to-end throughput (atmosphere, fibre losses, spectrograph, CCD).
    throughput_peak : float
        Wavelength of peak throughput, Å.
    throughput_edge : float
        Throughput at the far end of the range relative to the peak (the curve
        is a Gaussian in ln λ).
    fibre_area : float
        Fibre aperture on the sky in arcsec².
    read_noise : float
        Read noise per extracted pixel in electrons (all exposures combined).
    sky_mag : tuple of float
        Dark-sky continuum AB surface brightness in u, g, r, i, z
        (mag/arcsec²).
    reference : str
        Source of the numbers.

    Examples
    --------
    The surveys the simulator knows are in `SURVEYS`:

    >>> from spectralnn.simulate import SURVEYS
    >>> sdss = SURVEYS["SDSS"]
    >>> sdss.wave_min, sdss.wave_max, sdss.grid, sdss.step
    (3800.0, 9200.0, 'log10', 0.0001)
    >>> round(float(sdss.resolution_at(5000.0)))
    1877
    """

    name: str
    wave_min: float
    wave_max: float
    grid: str
    step: float
    resolution_wave: tuple
    resolution: tuple
    area: float
    exptime: float
    throughput: float
    throughput_peak: float
    throughput_edge: float
    fibre_area: float
    read_noise: float
    sky_mag: tuple = (22.1, 22.0, 21.1, 20.3, 19.1)
    reference: str = ""

    def resolution_at(self, wavelength):
        """
        Spectral resolution R = λ / FWHM at the given wavelengths (Å).

        Examples
        --------
        >>> SURVEYS["DESI"].resolution_at([3600.0, 9824.0])  # doctest: +FLOAT_CMP
        array([2000., 5500.])
        """
        return np.interp(wavelength, self.resolution_wave, self.resolution)

    def lsf_sigma(self, wavelength):
        """
        Gaussian line-spread-function σ in Å at the given wavelengths (Å).

        Examples
        --------
        >>> round(float(SURVEYS["SDSS"].lsf_sigma(5000.0)), 2)
        1.13
        """
        wavelength = np.asarray(wavelength, dtype=np.float64)
        return wavelength / (self.resolution_at(wavelength) * _FWHM_SIGMA)

    def throughput_at(self, wavelength):
        """
        End-to-end throughput at the given wavelengths (Å).

        Examples
        --------
        >>> sdss = SURVEYS["SDSS"]
        >>> bool(sdss.throughput_at(sdss.throughput_peak) == sdss.throughput)
        True
        """
        wavelength = np.asarray(wavelength, dtype=np.float64)
        reach = max(
            abs(np.log(self.wave_min / self.throughput_peak)),
            abs(np.log(self.wave_max / self.throughput_peak)),
        )
        width = reach / np.sqrt(-2.0 * np.log(self.throughput_edge))
        x = np.log(wavelength / self.throughput_peak) / width
        return self.throughput * np.exp(-0.5 * x**2)


#: Supported surveys (name -> `Survey`). See the module docstring for sources.
SURVEYS = {
    "SDSS": Survey(
        "SDSS",
        3800.0,
        9200.0,
        "log10",
        1e-4,
        (3800.0, 6000.0, 9200.0),
        (1850.0, 1900.0, 2200.0),
        area=3.6e4,
        exptime=2700.0,
        throughput=0.08,
        throughput_peak=6000.0,
        throughput_edge=0.35,
        fibre_area=7.07,
        read_noise=9.0,
        reference="York et al. 2000, AJ 120, 1579",
    ),
    "BOSS": Survey(
        "BOSS",
        3600.0,
        10400.0,
        "log10",
        1e-4,
        (3600.0, 6000.0, 6001.0, 10400.0),
        (1560.0, 2270.0, 1850.0, 2650.0),
        area=3.6e4,
        exptime=3600.0,
        throughput=0.22,
        throughput_peak=6500.0,
        throughput_edge=0.3,
        fibre_area=3.14,
        read_noise=10.0,
        reference="Smee et al. 2013, AJ 146, 32; Dawson et al. 2013, AJ 145, 10",
    ),
    "DESI": Survey(
        "DESI",
        3600.0,
        9824.0,
        "linear",
        0.8,
        (3600.0, 5800.0, 7600.0, 9824.0),
        (2000.0, 3200.0, 4100.0, 5500.0),
        area=8.7e4,
        exptime=1000.0,
        throughput=0.30,
        throughput_peak=6500.0,
        throughput_edge=0.45,
        fibre_area=1.77,
        read_noise=6.0,
        reference="DESI Collaboration 2022, AJ 164, 207",
    ),
    "4MOST": Survey(
        "4MOST",
        3700.0,
        9500.0,
        "linear",
        0.5,
        (3700.0, 9500.0),
        (4000.0, 7500.0),
        area=8.5e4,
        exptime=1200.0,
        throughput=0.25,
        throughput_peak=6500.0,
        throughput_edge=0.4,
        fibre_area=1.65,
        read_noise=6.0,
        reference="de Jong et al. 2019, The Messenger 175, 3 (LRS)",
    ),
}


def _air_to_vacuum(wave_air):
    """Air to vacuum wavelength (Å), Morton (2000, ApJS 130, 403) eq. 8."""
    wave_air = np.asarray(wave_air, dtype=np.float64)
    s2 = (1e4 / wave_air) ** 2
    return wave_air * (1.0 + 0.05792105 / (238.0185 - s2) + 0.00167917 / (57.362 - s2))


# air wavelength (Å), relative strength (line flux in units of the sky
# continuum per Å, i.e. an equivalent width in Å against the continuum)
_SKY_LINES_AIR = np.array(
    [
        (4046.56, 3.0),
        (4358.34, 6.0),
        (5460.74, 8.0),  # Hg I street lamps
        (5577.34, 60.0),  # [O I]
        (5889.95, 10.0),
        (5895.92, 8.0),  # Na I D
        (6300.30, 20.0),
        (6363.78, 7.0),  # [O I]
        (6863.96, 6.0),
        (6923.22, 6.0),
        (7276.41, 8.0),
        (7316.28, 12.0),
        (7340.89, 10.0),
        (7794.11, 10.0),
        (7821.50, 12.0),
        (7913.71, 12.0),
        (7993.33, 14.0),
        (8344.60, 18.0),
        (8399.17, 14.0),
        (8430.17, 14.0),
        (8827.10, 20.0),
        (8885.85, 18.0),
        (8919.63, 14.0),
        (8943.40, 16.0),
        (9375.96, 20.0),
        (9419.00, 16.0),
        (9439.67, 18.0),
        (9476.90, 16.0),
        (9520.56, 14.0),
        (9788.20, 12.0),
        (9872.20, 10.0),
        (10010.0, 10.0),
        (10125.0, 12.0),
        (10290.0, 12.0),
    ]
)

#: Bright night-sky emission lines: ``(vacuum wavelength in Å, strength)``,
#: the strength being the line flux relative to the sky continuum per Å.
SKY_LINES = np.column_stack(
    [_air_to_vacuum(_SKY_LINES_AIR[:, 0]), _SKY_LINES_AIR[:, 1]]
)

#: Fractional error of the sky subtraction at a sky line (1σ).
_SKY_RESIDUAL = 0.03


def _get_survey(survey):
    if isinstance(survey, Survey):
        return survey
    try:
        return SURVEYS[survey]
    except KeyError:
        raise KeyError(
            f"unknown survey {survey!r}; known surveys: {', '.join(SURVEYS)}"
        ) from None


def survey_grid(survey):
    """
    Return the pixel wavelengths of a survey's spectra.

    Log-linear grids are aligned on integer multiples of 1e-4 in log10 λ, as
    SDSS and BOSS spectra are, so grids of both surveys share pixels.

    Parameters
    ----------
    survey : str or `Survey`
        One of the keys of `SURVEYS` (``'SDSS'``, ``'BOSS'``, ``'DESI'``,
        ``'4MOST'``) or a `Survey`.

    Returns
    -------
    wavelength : ndarray
        Vacuum wavelengths in Å, increasing.

    Raises
    ------
    KeyError
        If the survey is unknown.

    Examples
    --------
    >>> wave = survey_grid("DESI")
    >>> wave[0], wave[1] - wave[0], wave.size  # doctest: +FLOAT_CMP
    (np.float64(3600.0), np.float64(0.8), 7781)
    """
    s = _get_survey(survey)
    if s.grid == "log10":
        lo = np.ceil(np.log10(s.wave_min) / s.step - 1e-6)
        hi = np.floor(np.log10(s.wave_max) / s.step + 1e-6)
        return 10.0 ** (np.arange(lo, hi + 1) * s.step)
    n = int(np.floor((s.wave_max - s.wave_min) / s.step + 1e-6)) + 1
    return s.wave_min + s.step * np.arange(n)


def as_generators(rng, n):
    """
    Normalise a random-state argument: a Generator, or a list of N Generators.

    Parameters
    ----------
    rng : None, int, `numpy.random.Generator`, `numpy.random.SeedSequence` or sequence
        One source for the whole batch, or a sequence of N Generators (one per
        spectrum; results are then independent of how spectra are batched).
    n : int
        Number of spectra.

    Returns
    -------
    rng : `numpy.random.Generator` or list of `numpy.random.Generator`

    Examples
    --------
    >>> gens = as_generators([1, 2], 2)
    >>> len(gens)
    2
    """
    if isinstance(rng, (list, tuple)):
        if len(rng) != n:
            raise ValueError(f"got {len(rng)} random generators for {n} spectra")
        return [np.random.default_rng(g) for g in rng]
    return np.random.default_rng(rng)


def _normal(rng, n, shape):
    """Draw standard normals (n, *shape) from one Generator or one per row."""
    if isinstance(rng, list):
        return np.stack([g.standard_normal(shape) for g in rng]).reshape((n, *shape))
    return rng.standard_normal((n, *shape))


def _uniform(rng, n, shape):
    """Uniform [0, 1) numbers of shape (n, *shape), as `_normal`."""
    if isinstance(rng, list):
        return np.stack([g.random(shape) for g in rng]).reshape((n, *shape))
    return rng.random((n, *shape))


def _pixel_width(wave):
    """Width of each pixel in Å (from the midpoints between pixels)."""
    edges = np.empty(wave.shape[:-1] + (wave.shape[-1] + 1,))
    edges[..., 1:-1] = 0.5 * (wave[..., 1:] + wave[..., :-1])
    edges[..., 0] = wave[..., 0] - 0.5 * (wave[..., 1] - wave[..., 0])
    edges[..., -1] = wave[..., -1] + 0.5 * (wave[..., -1] - wave[..., -2])
    return np.diff(edges, axis=-1)


def convolve_lsf(wave, flux, sigma):
    """
    Convolve spectra with a Gaussian of wavelength-dependent width (Å).

    The kernel is normalised over the pixels that exist, so flux is conserved
    and the edges are not darkened. Vectorised over spectra; the loop runs
    over the few pixel offsets of the kernel.
    """
    wave = np.asarray(wave, dtype=np.float64)
    dw = np.min(np.diff(wave, axis=-1))
    half = int(np.ceil(4.0 * np.max(sigma) / dw))
    m = flux.shape[-1]
    num = np.zeros(np.broadcast_shapes(flux.shape, wave.shape))
    norm = np.zeros(np.broadcast_shapes(sigma.shape, wave.shape))
    width = _pixel_width(wave)
    for k in range(-half, half + 1):
        lo, hi = max(0, -k), min(m, m - k)
        if hi <= lo:
            continue
        d = wave[..., lo + k : hi + k] - wave[..., lo:hi]
        s = sigma[..., lo:hi]
        w = np.exp(-0.5 * (d / s) ** 2) * width[..., lo + k : hi + k]
        num[..., lo:hi] += w * flux[..., lo + k : hi + k]
        norm[..., lo:hi] += w
    return num / norm


def _sky_spectrum(survey, wave):
    """Sky continuum and sky-line flux per fibre (1e-17 erg/s/cm²/Å) at ``wave``."""
    centres = np.array([3557.0, 4825.0, 6261.0, 7672.0, 9097.0])
    mag = np.interp(np.log(wave), np.log(centres), survey.sky_mag)
    continuum = 3631e-23 * 10 ** (-0.4 * mag) * 2.99792458e18 / wave**2 / 1e-17
    continuum = continuum * survey.fibre_area
    return continuum


def _sky_lines(survey, wave):
    """Per-line sky profiles (L, M) in flux units, each convolved with the LSF."""
    cont = _sky_spectrum(survey, wave)
    keep = (SKY_LINES[:, 0] > wave[0] - 20) & (SKY_LINES[:, 0] < wave[-1] + 20)
    centre, strength = SKY_LINES[keep, 0], SKY_LINES[keep, 1]
    sigma = survey.lsf_sigma(centre)
    cont_at = np.interp(centre, wave, cont)
    prof = np.exp(-0.5 * ((wave[None, :] - centre[:, None]) / sigma[:, None]) ** 2)
    prof *= (strength * cont_at / (np.sqrt(2 * np.pi) * sigma))[:, None]
    return cont, prof


def observe(
    wavelength,
    flux,
    *,
    survey="SDSS",
    snr=None,
    magnitude=None,
    band="r",
    ebv=None,
    rng=None,
    sky=True,
    wiggles=True,
    bad_pixels=True,
):
    """
    Observe noiseless model spectra with a survey's instrument.

    Steps, in order: Galactic reddening (Gordon et al. 2023 curve, R_V = 3.1),
    optional rescaling to a magnitude, Gaussian line-spread function with the
    survey's R(λ), smooth multiplicative flux-calibration wiggles (a cubic
    Legendre series with 2 % rms per coefficient), noise from source + sky +
    read noise through the survey's throughput (optionally rescaled to a
    median S/N), sky-subtraction residuals at the sky lines (3 % of each
    line's flux, scaled with the noise when ``snr`` rescales it, so that
    residuals stay the same number of σ) and bad pixels (isolated hot pixels,
    occasionally a dead run of CCD columns).

    The returned inverse variance is the inverse of the variance from which
    the noise was drawn (as a pipeline reports it): ``(flux - noiseless) *
    sqrt(ivar)`` is a standard normal everywhere except at the sky lines,
    where the systematic sky residual adds scatter the ivar does not carry
    (as in real spectra).

    Parameters
    ----------
    wavelength : array-like
        Observed-frame vacuum wavelengths in Å, shape ``(M,)`` (normally
        `survey_grid`), inside the survey's range.
    flux : array-like
        Noiseless f_λ in 1e-17 erg/s/cm²/Å, shape ``(N, M)`` or ``(M,)``.
    survey : str or `Survey`, optional
        Default ``'SDSS'``.
    snr : float or array-like, optional
        Requested median S/N per pixel (per spectrum). The noise keeps its
        source/sky/read-noise shape and is scaled to reach it.
    magnitude : float or array-like, optional
        AB magnitude in ``band`` to scale the (reddened) flux to before
        observing. Default: the flux is taken as it is.
    band : str, optional
        Band of ``magnitude``. Default ``'r'``.
    ebv : float or array-like, optional
        Galactic E(B-V) in mag. Default: no reddening.
    rng : None, int, `numpy.random.Generator` or sequence of them, optional
        Random state; a sequence gives one Generator per spectrum (results
        then do not depend on how spectra are batched).
    sky, wiggles, bad_pixels : bool, optional
        Switch the sky lines (residuals and extra noise), the calibration
        wiggles, the bad pixels on or off. Default all on.

    Returns
    -------
    flux : ndarray
        Observed flux, shape ``(N, M)``.
    ivar : ndarray
        Inverse variance, shape ``(N, M)``, zero at masked pixels.
    mask : ndarray of bool
        True at bad pixels.

    Raises
    ------
    spectralnn.errors.WavelengthCoverageError
        If the wavelengths leave the survey's range, or ``magnitude`` is given
        for a band the wavelengths do not cover.
    ValueError
        If ``snr`` or ``magnitude`` is not positive/finite.

    Examples
    --------
    >>> import numpy as np
    >>> wave = survey_grid("BOSS")
    >>> flux = np.ones((3, wave.size))
    >>> obs, ivar, mask = observe(wave, flux, survey="BOSS", snr=8.0, rng=0,
    ...                           sky=False, bad_pixels=False, wiggles=False)
    >>> float(np.median(np.sqrt(ivar[0])))  # doctest: +FLOAT_CMP
    8.0
    """
    s = _get_survey(survey)
    wave = np.asarray(wavelength, dtype=np.float64)
    flux = np.atleast_2d(np.array(flux, dtype=np.float64))
    n, m = flux.shape
    if wave.shape != (m,):
        raise ValueError(f"wavelength must have shape ({m},), got {wave.shape}")
    if wave[0] < s.wave_min * (1 - 1e-3) or wave[-1] > s.wave_max * (1 + 1e-3):
        raise WavelengthCoverageError(
            f"wavelengths {wave[0]:.1f}-{wave[-1]:.1f} Å leave the {s.name} range "
            f"{s.wave_min:.0f}-{s.wave_max:.0f} Å"
        )
    rng = as_generators(rng, n)

    # draw every random number first, in a fixed order (determinism)
    noise = _normal(rng, n, (m,))
    coeff = _normal(rng, n, (4,))
    lines_in = (SKY_LINES[:, 0] > wave[0] - 20) & (SKY_LINES[:, 0] < wave[-1] + 20)
    sky_err = _normal(rng, n, (int(lines_in.sum()),))
    hot = _uniform(rng, n, (m,))
    column = _uniform(rng, n, (3,))

    # Galactic reddening
    if ebv is not None:
        from astropy import units as u
        from dust_extinction.parameter_averages import G23

        ebv_arr = np.broadcast_to(np.asarray(ebv, dtype=np.float64), (n,))
        a_over_av = G23(Rv=3.1)(wave * u.AA)
        flux = flux * 10 ** (-0.4 * 3.1 * ebv_arr[:, None] * a_over_av[None, :])

    if magnitude is not None:
        mag = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), (n,))
        if not np.all(np.isfinite(mag)):
            raise ValueError("magnitude must be finite")
        current = synthetic_photometry(wave, flux, bands=band)[band]
        if np.any(~np.isfinite(current)):
            raise WavelengthCoverageError(
                f"cannot scale to a {band}-band magnitude: the wavelengths "
                f"{wave[0]:.0f}-{wave[-1]:.0f} Å do not cover the band or the "
                "flux in it is not positive"
            )
        flux = flux * 10 ** (-0.4 * (mag - current))[:, None]

    sigma_lsf = s.lsf_sigma(wave)
    model = convolve_lsf(wave, flux, sigma_lsf)

    if wiggles:
        x = 2.0 * (wave - wave[0]) / (wave[-1] - wave[0]) - 1.0
        legendre = np.polynomial.legendre.legvander(x, 3)  # (M, 4)
        # explicit sums, not BLAS matmuls: each row's result must not depend
        # on how many rows are in the batch
        calib = np.ones((n, m))
        for j in range(4):
            calib += 0.02 * coeff[:, j : j + 1] * legendre[:, j]
        model_obs = model * calib
    else:
        model_obs = model

    # counts per pixel per unit flux (1e-17 erg/s/cm2/A)
    gain = (
        s.area
        * s.exptime
        * s.throughput_at(wave)
        * _pixel_width(wave)
        * wave
        / _H_C
        * 1e-17
    )
    sky_cont, sky_prof = _sky_lines(s, wave)
    sky_flux = sky_cont + (sky_prof.sum(axis=0) if sky else 0.0)
    var_counts = (
        np.clip(model_obs, 0.0, None) * gain + sky_flux * gain + s.read_noise**2
    )
    sigma = np.sqrt(var_counts) / gain
    if snr is not None:
        snr_arr = np.broadcast_to(np.asarray(snr, dtype=np.float64), (n,))
        if not np.all(np.isfinite(snr_arr) & (snr_arr > 0)):
            raise ValueError(f"snr must be positive and finite, got {snr}")
        current = np.median(np.abs(model_obs) / sigma, axis=1)
        current = np.where(current > 0, current, 1.0)
        noise_scale = current / snr_arr
        sigma = sigma * noise_scale[:, None]
    else:
        noise_scale = np.ones(n)

    observed = model_obs + sigma * noise
    if sky:
        # sky-subtraction residuals scale with the sky, hence with the noise
        amp = _SKY_RESIDUAL * noise_scale[:, None] * sky_err
        for j in range(sky_prof.shape[0]):
            cols = np.flatnonzero(sky_prof[j] > 1e-8 * sky_prof[j].max())
            if cols.size:
                lo, hi = cols[0], cols[-1] + 1
                observed[:, lo:hi] += amp[:, j : j + 1] * sky_prof[j, lo:hi]
    ivar = 1.0 / sigma**2

    mask = np.zeros((n, m), dtype=bool)
    if bad_pixels:
        # isolated hot pixels (cosmic-ray residuals), 1 in 2000
        hot_pix = hot < 5e-4
        observed = np.where(hot_pix, observed + 20.0 * sigma, observed)
        mask |= hot_pix
        # one spectrum in ten has a dead run of 3-30 columns
        dead = column[:, 0] < 0.1
        start = (column[:, 1] * m).astype(int)
        length = 3 + (column[:, 2] * 28).astype(int)
        pix = np.arange(m)[None, :]
        mask |= (
            dead[:, None] & (pix >= start[:, None]) & (pix < (start + length)[:, None])
        )
        observed = np.where(mask & ~hot_pix, 0.0, observed)
    ivar[mask] = 0.0
    return observed, ivar, mask
